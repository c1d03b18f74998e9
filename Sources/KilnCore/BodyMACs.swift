import Crypto

/// HMAC-SHA256 of a webhook body under each of a forge's secrets, computed chunk by chunk as
/// the body arrives, so the signature is checked without a second pass over the body.
public struct BodyMACs: Sendable {
    private var running: [(secret: Secret, mac: HMAC<SHA256>)]

    /// MACs under `secrets` (empty secrets are never used to verify, so they are skipped).
    public init(secrets: [Secret]) {
        running = secrets.filter { !$0.value.isEmpty }.map { ($0, HMAC<SHA256>(key: SymmetricKey(data: $0.bytes))) }
    }

    /// Whether there is anything to compute.
    public var isEmpty: Bool { running.isEmpty }

    /// Adds the next chunk of the body.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        for index in running.indices { running[index].mac.update(data: bytes) }
    }

    /// The MAC of the whole body under each secret.
    public func finalize() -> [Secret: [UInt8]] {
        Dictionary(running.map { ($0.secret, Array($0.mac.finalize())) }, uniquingKeysWith: { first, _ in first })
    }
}
