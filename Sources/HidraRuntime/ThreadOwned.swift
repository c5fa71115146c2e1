/// A value one thread reads and writes on every frame, kept outside the object
/// that holds it, on cache lines of its own.
///
/// A `var` stored in a class is checked for exclusive access at run time
/// whenever Swift cannot prove the access ends before anything else could touch
/// it, which is every access around a call the optimizer cannot see through.
/// Each check is a `swift_beginAccess` and a `swift_endAccess`, a thread-local
/// lookup and a walk of the thread's open accesses: about 110 instructions,
/// twice per frame on each side of an edge, a fifth of what moving a frame
/// across cost (`bench/instructions.sh`). A value reached through a pointer is
/// not checked, so the per-frame state of an edge or an output lives here, held
/// by a `let`.
///
/// The owner promises what the checks would have caught: one thread at a time
/// uses the value (the producer's side of an edge, say), and no access to it
/// overlaps another (no method that holds `value` inout calls back into code
/// that touches it).
struct ThreadOwned<Value: ~Copyable>: ~Copyable {
  private let pointer: UnsafeMutablePointer<Value>

  init(_ value: consuming Value) {
    // Whole cache lines, so that no other object's fields share them.
    let line = 64
    let bytes = (MemoryLayout<Value>.stride + line - 1) / line * line
    pointer = UnsafeMutableRawPointer.allocate(byteCount: max(bytes, line), alignment: line)
      .bindMemory(to: Value.self, capacity: 1)
    pointer.initialize(to: value)
  }

  deinit {
    pointer.deinitialize(count: 1)
    pointer.deallocate()
  }

  var value: Value {
    unsafeAddress { UnsafePointer(pointer) }
    nonmutating unsafeMutableAddress { pointer }
  }
}
