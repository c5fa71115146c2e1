#ifndef HIDRA_CLZ4_SHIM_H
#define HIDRA_CLZ4_SHIM_H
#include <lz4.h>
#endif
