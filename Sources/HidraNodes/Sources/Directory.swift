import HidraGraph

/// `directory`: files appearing in a watched directory (PILATUS and any file-writing detector).
public enum DirectorySource {
  public static let spec = NodeTypeSpec(
    name: "directory", kind: .source,
    summary: "files that appear in a watched directory tree",
    details: """
      Watches `path` with inotify and sends each file once it is complete (closed after writing, or \
      moved in). Files are named by their path relative to `path`, so a store can mirror the tree. \
      Large files travel in chunks of `chunk_size`. `on_done` acts on the original file only after \
      every guaranteed sink downstream has confirmed it (stored durably, or acknowledged by a peer).
      """,
    options: [
      OptionSpec("path", .path(.directory), required: true, doc: "The directory to watch."),
      OptionSpec(
        "recursive", .boolean, default: "true",
        doc: "Also watch subdirectories, including ones created later."),
      OptionSpec("include", .list(.glob), doc: "Only files whose relative path matches one of these globs."),
      OptionSpec(
        "exclude", .list(.glob),
        doc: "Skip files whose relative path matches one of these globs (wins over include)."),
      OptionSpec(
        "settle", .duration, default: "0s",
        doc: "Wait this long after a file closes before sending it, for writers that reopen files."),
      OptionSpec(
        "existing", .choice(["send", "skip"]), default: "send",
        doc: "What to do with files present at start-up."),
      OptionSpec(
        "on_done", .choice(["keep", "delete"], prefixes: ["move:"]), default: "keep",
        doc:
          "After every guaranteed sink confirmed a file: keep it, delete it, or move it under DIR (`move:DIR`)."
      ),
      OptionSpec(
        "chunk_size", .size(min: 4096), default: "8MiB",
        doc: "Files larger than this travel in chunks of this size."),
    ],
    example: """
      pilatus:
        type: directory
        path: /ramdisk/pilatus
        include: ["**/*.cbf"]
        on_done: delete
      """)
}
