import Foundation
import KilnCore
import KilnStore
import KilnTesting
import Testing

/// The pages in a real browser (headless Chromium over WebDriver): a running job's log grows in
/// place without a reload, its card moves to succeeded when it ends, and a signed-in keyboard
/// user cancels a build. Screenshots land in `.build/screenshots/`.
@Suite struct BrowserTests {
    static let screenshots = FileManager.default.currentDirectoryPath + "/.build/screenshots"

    @Test(.timeLimit(.minutes(4))) func aBuildIsWatchedLiveAndCancelledFromTheKeyboard() async throws {
        guard WebDriver.isAvailable else {
            // `make test` installs chromium and chromium-driver; elsewhere the test says what is missing.
            #expect(ProcessInfo.processInfo.environment["KILN_REQUIRE_NIX"] == nil, "install chromium and chromium-driver (make deps does)")
            return
        }
        let world = try await World.make()
        defer { Task { await world.close() } }
        let marker = UUID().uuidString.prefix(8)
        try TestFlake(packages: [
            "chatty": "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo chatty-\(marker)-$i; $bb sleep 0.15; done; $bb mkdir $out",
            "sleeper": "echo sleeping-\(marker); $bb sleep 120; $bb mkdir $out",
        ]).write(to: world.repository.path)
        try world.repository.write(".kiln.yml", "jobs:\n  chatty: {build: .#chatty}\n")
        let sha = try world.repository.commit("a chatty job")
        let kiln = try await KilnInstance.start(config: world.configPath)
        defer { Task { await kiln.stop() } }
        let (_, token) = try await TokenText.create(
            name: "browser", scope: .control, in: try SQLStore(path: world.directory.appending("data/kiln.sqlite")))
        try FileManager.default.createDirectory(atPath: Self.screenshots, withIntermediateDirectories: true)

        let browser = try await WebDriver()
        do {
            try await watchAndCancel(browser, kiln: kiln, world: world, sha: sha, marker: String(marker), token: token)
            await browser.quit()
        } catch {
            // The browser ends with the test, whatever happened.
            await browser.quit()
            throw error
        }
    }

    func watchAndCancel(_ browser: WebDriver, kiln: KilnInstance, world: World, sha: String, marker: String, token: String) async throws {
        let first = try #require(try await kiln.push(repository: World.name, sha: sha, secret: World.secret).json["build_id"] as? Int)
        try await browser.open("\(kiln.url)/builds/\(first)")
        // Once the job runs, its log is followed in place: the page is not reloaded for its lines.
        try await eventually("the chatty job's log to be followed", within: .seconds(60)) {
            if (try? await browser.element("pre[data-follow]")) != nil { return true }
            try? await browser.open("\(kiln.url)/builds/\(first)")
            return false
        }
        // Lines arrive while the page stays the same page: a marker set in it survives them. (The
        // page may reload once for an event that raced its first render; then the marker is set again.)
        let followedText = "var p=document.querySelector('pre[data-follow]');return p?p.textContent:''"
        var grewInPlace = false
        for _ in 0..<5 where !grewInPlace {
            _ = try await browser.run("window.kilnMarker = 42;")
            let before = (try await browser.run(followedText) as? String ?? "").components(separatedBy: "chatty-\(marker)-").count
            try await eventually("lines to arrive", within: .seconds(30)) {
                let now = ((try? await browser.run(followedText)) as? String ?? "").components(separatedBy: "chatty-\(marker)-").count
                let reloaded = (try? await browser.run("return window.kilnMarker")) as? Int != 42
                return reloaded || now >= before + 5
            }
            grewInPlace = (try await browser.run("return window.kilnMarker")) as? Int == 42
        }
        #expect(grewInPlace, "five lines arrived without the page being reloaded")
        try Data(try await browser.screenshot()).write(to: URL(fileURLWithPath: Self.screenshots + "/build-running.png"))
        // The job ends: the page reloads on its end, and the job shows succeeded.
        try await eventually("the job to show succeeded", within: .seconds(60)) {
            let cell = try? await browser.element("table.jobs td.succeeded")
            return cell != nil
        }
        // Its derivation's card folds once it succeeded; a search shows only the lines that match.
        #expect(try await browser.element("details.drv.succeeded:not([open])") != nil)
        let search = try #require(try await browser.element("input.log-search"))
        try await browser.type("chatty-\(marker)-17", into: search)
        let shown = try await browser.run(
            "return Array.from(document.querySelectorAll('.job-log span.l')).filter(function(s){return getComputedStyle(s).display!=='none'}).map(function(s){return s.textContent})")
            as? [String] ?? []
        #expect(!shown.isEmpty && shown.allSatisfy { $0.contains("chatty-\(marker)-17") }, "\(shown)")
        try Data(try await browser.screenshot()).write(to: URL(fileURLWithPath: Self.screenshots + "/build-page.png"))
        try await browser.open("\(kiln.url)/")
        #expect(try await browser.element("table.builds a[href='/builds/\(first)']") != nil)
        try Data(try await browser.screenshot()).write(to: URL(fileURLWithPath: Self.screenshots + "/build-list.png"))

        // Sign in, then cancel a running build with the keyboard alone.
        try await browser.open("\(kiln.url)/sign-in")
        let field = try #require(try await browser.element("input[name=token]"))
        try await browser.type(token + "\u{E007}", into: field)
        try await eventually("the sign-in to land on the build list", within: .seconds(10)) {
            ((try? await browser.run("return document.body.textContent")) as? String ?? "").contains("signed in · control")
        }
        try world.repository.write(".kiln.yml", "jobs:\n  sleeper: {build: .#sleeper}\n")
        let second = try #require(
            try await kiln.push(repository: World.name, sha: try world.repository.commit("a long job"), before: sha, secret: World.secret)
                .json["build_id"] as? Int)
        try await browser.open("\(kiln.url)/builds/\(second)")
        try await eventually("the cancel button", within: .seconds(30)) { (try? await browser.element("form[action$='/cancel'] button")) != nil }
        var focused = ""
        for _ in 0..<40 where focused != "Cancel" {
            try await browser.press("\u{E004}")
            focused = (try await browser.run("return document.activeElement ? document.activeElement.textContent : ''")) as? String ?? ""
        }
        #expect(focused == "Cancel", "Tab reaches the cancel button")
        try await browser.press("\u{E007}")
        try await eventually("the build to show cancelled", within: .seconds(60)) {
            ((try? await browser.run("return document.querySelector('h1').textContent")) as? String ?? "").contains("cancelled")
        }
        #expect((try await kiln.build(second))["state"] as? String == "cancelled")
    }
}
