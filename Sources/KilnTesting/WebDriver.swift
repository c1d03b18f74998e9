import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationEssentialsCompat
import NIOHTTP1

/// Headless Chromium driven over the W3C WebDriver protocol (what Selenium speaks) through
/// Debian's `chromedriver`, for tests of the pages in a real browser.
public final class WebDriver: @unchecked Sendable {
    private let process: Process
    private let base: String
    private let session: String

    /// Whether `chromedriver` and `chromium` are installed.
    public static var isAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver") && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium")
    }

    /// Starts chromedriver on a free port and a headless browser session.
    public init() async throws {
        let port = Int.random(in: 20_000...40_000)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/chromedriver")
        process.arguments = ["--port=\(port)"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        base = "http://127.0.0.1:\(port)"
        let started = ContinuousClock.now
        while (try? await Self.call("GET", "\(base)/status"))?["value"] == nil {
            guard ContinuousClock.now - started < .seconds(20) else { throw WebDriverError("chromedriver did not start") }
            try await Task.sleep(for: .milliseconds(100))
        }
        let capabilities: [String: Any] = [
            "capabilities": [
                "alwaysMatch": [
                    "browserName": "chrome",
                    "goog:chromeOptions": [
                        "binary": "/usr/bin/chromium",
                        // Chromium's own sandbox cannot run as root; nothing untrusted is browsed.
                        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"],
                    ] as [String: Any],
                ] as [String: Any]
            ]
        ]
        let answer = try await Self.call("POST", "\(base)/session", capabilities)
        guard let value = answer["value"] as? [String: Any], let id = value["sessionId"] as? String else {
            process.terminate()
            throw WebDriverError("no browser session: \(answer)")
        }
        session = "\(base)/session/\(id)"
    }

    /// Ends the browser and chromedriver.
    public func quit() async {
        _ = try? await Self.call("DELETE", session)
        // chromedriver started by Foundation's Process does not end on SIGTERM; it has no state
        // to save, so it is killed.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Opens `url`.
    public func open(_ url: String) async throws { _ = try await command("POST", "/url", ["url": url]) }

    /// The first element matching a CSS selector; nil when none does.
    public func element(_ css: String) async throws -> String? {
        let answer = try await Self.call("POST", session + "/element", ["using": "css selector", "value": css])
        guard let value = answer["value"] as? [String: Any] else { return nil }
        return value.first { $0.key.hasPrefix("element-") }?.value as? String
    }

    /// An element's visible text.
    public func text(_ element: String) async throws -> String {
        try await command("GET", "/element/\(element)/text") as? String ?? ""
    }

    /// Clicks an element.
    public func click(_ element: String) async throws { _ = try await command("POST", "/element/\(element)/click", [:]) }

    /// Types into an element (WebDriver key codes such as "\u{E004}" for Tab work too).
    public func type(_ text: String, into element: String) async throws {
        _ = try await command("POST", "/element/\(element)/value", ["text": text])
    }

    /// Presses keys on whatever has the focus.
    public func press(_ keys: String) async throws {
        let actions = keys.unicodeScalars.flatMap { key -> [[String: Any]] in
            [["type": "keyDown", "value": String(key)], ["type": "keyUp", "value": String(key)]]
        }
        _ = try await command("POST", "/actions", ["actions": [["type": "key", "id": "keyboard", "actions": actions]]])
    }

    /// Runs `script` in the page and returns its result.
    public func run(_ script: String) async throws -> Any? {
        try await command("POST", "/execute/sync", ["script": script, "args": []])
    }

    /// A PNG of the window.
    public func screenshot() async throws -> Data {
        guard let text = try await command("GET", "/screenshot") as? String, let data = Data(base64Encoded: text) else {
            throw WebDriverError("no screenshot")
        }
        return data
    }

    private func command(_ method: String, _ path: String, _ body: [String: Any]? = nil) async throws -> Any? {
        let answer = try await Self.call(method, session + path, body)
        if let value = answer["value"] as? [String: Any], let error = value["error"] as? String {
            throw WebDriverError("\(path): \(error): \(value["message"] as? String ?? "")")
        }
        return answer["value"]
    }

    private static func call(_ method: String, _ url: String, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        request.headers.add(name: "Content-Type", value: "application/json")
        if let body { request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return (try? JSONSerialization.jsonObject(with: Data(buffer: bytes))) as? [String: Any] ?? [:]
    }
}

/// What went wrong talking to the browser.
public struct WebDriverError: Error, CustomStringConvertible {
    public var description: String
    /// An error that says `description`.
    public init(_ description: String) { self.description = description }
}
