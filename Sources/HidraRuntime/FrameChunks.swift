import Synchronization

/// The storage of a lock-free edge: frames in fixed chunks, linked one to the
/// next, written by one producer thread (`Writer`) and read by one consumer
/// thread (`Reader`).
///
/// The producer fills the tail chunk and links a new one when it is full; the
/// consumer moves frames out of the head chunk and, once past its end, follows
/// the link and hands the used chunk back through a spare slot (one chunk kept,
/// as libzmq's `yqueue` does), so a steady stream allocates nothing. The two
/// sides share no index: the edge publishes how many frames were written, every
/// write into a slot or a link happens before that publication (a release
/// store), and the consumer reads only what it saw published (an acquire load).
///
/// Chunks rather than a ring of fixed size, because control frames do not count
/// against an edge's bounds: a best-effort edge must take a control frame
/// whatever it holds, so the storage cannot have a hard size.
///
/// The writer and the reader are kept apart by their owner (each on its own
/// cache line): each is written on every frame by its own thread.
enum FrameChunks {
  /// Frames per chunk: a chunk is allocated (or recycled) once per this many frames.
  static let slots = 128
  /// The slots start one cache line into the chunk; the link is in the first.
  private static let header = 64

  typealias Spare = Atomic<UnsafeMutableRawPointer?>

  /// The producer's end.
  struct Writer {
    fileprivate var chunk: UnsafeMutableRawPointer
    fileprivate var slot = 0

    /// Stores a frame behind the last one. It is the consumer's once the edge
    /// publishes the new count.
    mutating func push(_ frame: consuming Frame, spare: borrowing Spare) {
      if slot == FrameChunks.slots { link(spare: spare) }
      FrameChunks.slot(chunk, slot).initialize(to: consume frame)
      slot += 1
    }

    /// Moves the `count` frames at `frames` behind the last one, as `push` would
    /// one by one, but a chunk's worth at a time.
    mutating func push(moving frames: UnsafeMutablePointer<Frame>, count: Int, spare: borrowing Spare) {
      var moved = 0
      while moved < count {
        if slot == FrameChunks.slots { link(spare: spare) }
        let run = min(count - moved, FrameChunks.slots - slot)
        FrameChunks.slot(chunk, slot).moveInitialize(from: frames + moved, count: run)
        slot += run
        moved += run
      }
    }

    /// The tail chunk is full: links the spare one (or a new one) behind it.
    private mutating func link(spare: borrowing Spare) {
      let next = spare.exchange(nil, ordering: .acquiring) ?? FrameChunks.allocate()
      FrameChunks.setNext(next, nil)
      FrameChunks.setNext(chunk, next)
      chunk = next
      slot = 0
    }
  }

  /// The consumer's end.
  struct Reader {
    fileprivate var chunk: UnsafeMutableRawPointer
    fileprivate var slot = 0

    /// Moves the oldest frame out. Call only for a frame whose publication was
    /// seen.
    mutating func pop(spare: borrowing Spare) -> Frame {
      if slot == FrameChunks.slots {
        let used = chunk
        chunk = FrameChunks.next(used)!
        slot = 0
        if let old = spare.exchange(used, ordering: .releasing) { old.deallocate() }
      }
      let frame = FrameChunks.slot(chunk, slot).move()
      slot += 1
      return frame
    }

    /// Drops the `remaining` frames still stored and frees every chunk. For the
    /// end of the edge, when neither side uses it any more.
    mutating func free(remaining: Int, spare: borrowing Spare) {
      for _ in 0..<remaining { _ = pop(spare: spare) }
      var next: UnsafeMutableRawPointer? = chunk
      while let current = next {
        next = FrameChunks.next(current)
        current.deallocate()
      }
      spare.exchange(nil, ordering: .acquiring)?.deallocate()
    }
  }

  /// A writer and a reader on one new, empty chunk.
  static func make() -> (Writer, Reader) {
    let chunk = allocate()
    return (Writer(chunk: chunk), Reader(chunk: chunk))
  }

  private static func allocate() -> UnsafeMutableRawPointer {
    let chunk = UnsafeMutableRawPointer.allocate(
      byteCount: header + slots * MemoryLayout<Frame>.stride, alignment: header)
    (chunk + header).bindMemory(to: Frame.self, capacity: slots)
    setNext(chunk, nil)
    return chunk
  }

  private static func next(_ chunk: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
    chunk.load(as: UnsafeMutableRawPointer?.self)
  }

  private static func setNext(_ chunk: UnsafeMutableRawPointer, _ next: UnsafeMutableRawPointer?) {
    chunk.storeBytes(of: next, as: UnsafeMutableRawPointer?.self)
  }

  private static func slot(_ chunk: UnsafeMutableRawPointer, _ index: Int) -> UnsafeMutablePointer<Frame> {
    (chunk + header).assumingMemoryBound(to: Frame.self) + index
  }
}
