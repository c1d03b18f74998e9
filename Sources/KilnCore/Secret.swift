/// A credential read from a `*-file` key. Never printed: its descriptions are redacted,
/// so it cannot leak through logs or string interpolation by accident.
public struct Secret: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The secret itself; read it only where it is sent.
    public let value: String

    /// Wraps a secret value.
    public init(_ value: String) { self.value = value }

    /// The secret's bytes, for HMAC keys.
    public var bytes: [UInt8] { Array(value.utf8) }

    public var description: String { "<redacted>" }
    public var debugDescription: String { "<redacted>" }
}
