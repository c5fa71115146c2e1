import HidraGraph

/// Every node type Hidra knows, in the order the reference lists them.
///
/// Each type lives in its own file with its option declaration (and, as the
/// runtime grows, its implementation); this list is the one place they are
/// registered.
public enum NodeTypes {
  public static let all: [NodeTypeSpec] = [
    GenerateSource.spec,
    DirectorySource.spec,
    EigerStreamSource.spec,
    EigerFileWriterSource.spec,
    ZMQSource.spec,
    HidraTransferSource.spec,
    FilterNode.spec,
    SplitNode.spec,
    ChecksumNode.spec,
    StoreNode.spec,
    ForwardNode.spec,
  ]

  public static let catalog = NodeCatalog(all)
}

/// Fields every path template may use, for any frame.
enum TemplateFields {
  static let frame = [
    "series", "frame", "name", "relpath", "stem", "ext", "date", "time", "host", "graph", "node",
  ]
}
