import HidraGraph

/// `store`: writes each data frame as a file below a root, atomically.
public enum StoreNode {
  public static let spec = NodeTypeSpec(
    name: "store", kind: .store,
    summary: "writes each frame to a file below a root directory, atomically",
    details: """
      Each data frame is written to a hidden temporary file in its target directory, synced per \
      `fsync`, then renamed into place, so no reader ever sees a partial file. Paths come from the \
      `path` template and never leave `root`: names with `..`, absolute paths or symlinks that \
      escape are rejected and counted. On a guaranteed edge a full disk or a permission error never \
      loses a frame: the store retries and back-pressure does the rest.
      """,
    options: [
      OptionSpec(
        "root", .path(.exclusiveRoot), required: true, doc: "The directory files are written below."),
      OptionSpec(
        "path", .template(fields: TemplateFields.frame, attributes: true), default: "{relpath}",
        doc: "Where below `root` each frame goes. Fields: "
          + TemplateFields.frame.map { "`{\($0)}`" }.joined(separator: ", ")
          + ", `{attr.NAME}`; `{frame:06}` pads with zeros."),
      OptionSpec(
        "fsync", .choice(["none", "file", "file+dir"]), default: "file",
        doc:
          "What is synced before a frame counts as stored: nothing, the file, or the file and its directory."),
      OptionSpec(
        "on_exists", .choice(["fail", "overwrite", "rename", "skip-identical"]), default: "fail",
        doc:
          "When the target exists: count an error, replace it, store under a new name, or skip it if its bytes are the same."
      ),
      OptionSpec(
        "dir_mode", .string, default: "0755", doc: "Permissions (octal) of directories the store creates."),
      OptionSpec(
        "file_mode", .string, default: "0644", doc: "Permissions (octal) of files the store writes."),
      OptionSpec(
        "verify", .boolean, default: "false",
        doc: "Re-read every file after writing and compare its checksum."),
    ],
    example: """
      disk:
        type: store
        input: sum
        root: /gpfs/current/raw
        path: "{series}/{series}_{frame:06}.bin"
        fsync: file
      """,
    check: { check in
      for option in ["dir_mode", "file_mode"] {
        guard let text = check.node[option]?.string else { continue }
        if UInt16(text, radix: 8) == nil || text.count > 4 {
          check.error(option, "'\(option)' must be an octal permission such as 0755, got '\(text)'")
        }
      }
    })
}
