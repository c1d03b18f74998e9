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

/// Lowercase hexadecimal.
enum Hex {
    static func decode(_ text: Substring) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count.isMultiple(of: 2) else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        var index = 0
        while index < utf8.count {
            guard let high = nibble(utf8[index]), let low = nibble(utf8[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    private static func nibble(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return character - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}
