import Crypto
import Foundation

/// Signs webhook bodies the way the forges do, for tests and the `webhooks/` script.
public enum WebhookSigner {
    /// `sha256=<hex>` of HMAC-SHA256(secret, body), as GitHub sends in `X-Hub-Signature-256`.
    public static func github(_ body: [UInt8], secret: String) -> String {
        "sha256=" + hex(body, secret: secret)
    }

    /// Lowercase hex HMAC-SHA256.
    public static func hex(_ body: [UInt8], secret: String) -> String {
        HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Array(secret.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }

    /// Headers of a signed GitHub delivery.
    public static func githubHeaders(
        event: String, body: [UInt8], secret: String, delivery: String = UUID().uuidString
    ) -> [(name: String, value: String)] {
        [
            ("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery), ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", github(body, secret: secret)),
        ]
    }
}
