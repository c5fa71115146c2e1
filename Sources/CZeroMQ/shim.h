#ifndef HIDRA_CZEROMQ_SHIM_H
#define HIDRA_CZEROMQ_SHIM_H
#include <zmq.h>
#endif
