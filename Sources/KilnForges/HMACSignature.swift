import Crypto
import KilnCore

/// HMAC-SHA256 webhook signatures, checked in constant time over the raw body.
enum HMACSignature {
    /// Checks a `sha256=<hex>` header (GitHub's `X-Hub-Signature-256`, Bitbucket's `X-Hub-Signature`).
    /// Another algorithm, malformed hex or a wrong value is a bad signature.
    static func verifyPrefixed(_ delivery: WebhookDelivery, header: String, secrets: [Secret]) throws(WebhookError) {
        guard let signature = delivery.header(header) else { throw .missingSignature(header: header) }
        guard signature.hasPrefix("sha256="), verify(hex: signature.dropFirst(7), delivery, secrets: secrets) else {
            throw .badSignature(header: header)
        }
    }

    /// Whether `hex` is the HMAC-SHA256 of the delivery's body under any of `secrets`: the MACs
    /// the edge computed as the body streamed in, or else computed here. Malformed hex (wrong
    /// length, non-hex characters, upper-case) never verifies.
    static func verify(hex: Substring, _ delivery: WebhookDelivery, secrets: [Secret]) -> Bool {
        guard let mac = Hex.decode(hex), mac.count == SHA256.byteCount else { return false }
        var valid = false
        for secret in secrets where !secret.value.isEmpty {
            let expected = delivery.bodyMACs?[secret]
                ?? Array(HMAC<SHA256>.authenticationCode(for: delivery.body, using: SymmetricKey(data: secret.bytes)))
            // Every secret is tried, so timing does not tell which one matched.
            if ConstantTime.equals(mac, expected) { valid = true }
        }
        return valid
    }

    /// The signature of `body` under `secret`, as lowercase hex.
    static func sign(_ body: [UInt8], secret: Secret) -> String {
        Hex.encode(Array(HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: secret.bytes))))
    }
}
