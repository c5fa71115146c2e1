/// "Did you mean" suggestions by edit distance.
public enum Suggest {
  /// The candidate nearest to `word`, if it is near enough to be a plausible typo:
  /// at most a third of the word's length in edits (and at least one, at most three).
  /// Case is ignored; a transposition counts as one edit.
  public static func nearest<S: Sequence>(to word: String, in candidates: S) -> String?
  where S.Element == String {
    let limit = max(1, min(3, word.count / 3))
    var best: (name: String, distance: Int)?
    for candidate in candidates {
      let distance = editDistance(word.lowercased(), candidate.lowercased())
      guard distance <= limit else { continue }
      if best == nil || distance < best!.distance { best = (candidate, distance) }
    }
    return best?.name
  }

  /// `did you mean 'x'?` for the nearest candidate, or nil.
  public static func hint<S: Sequence>(for word: String, in candidates: S) -> String?
  where S.Element == String {
    nearest(to: word, in: candidates).map { "did you mean '\($0)'?" }
  }

  /// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
  public static func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.unicodeScalars)
    let b = Array(b.unicodeScalars)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous2 = [Int](repeating: 0, count: b.count + 1)
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
      current[0] = i
      for j in 1...b.count {
        let cost = a[i - 1] == b[j - 1] ? 0 : 1
        current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
          current[j] = min(current[j], previous2[j - 2] + 1)
        }
      }
      (previous2, previous, current) = (previous, current, previous2)
    }
    return previous[b.count]
  }
}
