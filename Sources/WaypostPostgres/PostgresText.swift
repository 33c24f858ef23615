extension String {
    /// Whether PostgreSQL's `text` can hold this: it refuses NUL. A value with one names
    /// nothing stored (what sources send is checked before it is stored).
    var isStorable: Bool { !utf8.contains(0) }
}
