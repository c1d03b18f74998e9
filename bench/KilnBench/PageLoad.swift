import Foundation
import KilnApp
import KilnCore
import KilnPipeline
import KilnTesting
import Logging
import ServiceLifecycle

/// `pages`: a build page with a 40,000-line job log in headless Chromium. Time to first paint
/// (the browser's own `first-contentful-paint`), and the most DOM chunks the page keeps while
/// 40,000 lines stream into a running job's log.
enum PageLoad {
    static let lines = 40_000

    /// Writes `lines` lines into each job's log: at once for `static`, in batches for `stream`.
    struct ChattyExecutor: Executor {
        func readiness() async -> Readiness { .ready("benchmark: writes logs") }
        func endLeftoverProcesses() async -> Int { 0 }
        func evaluate(_ request: EvaluationRequest, log: any LogSink, stop: StopSignal) async -> EvaluationReport {
            var results: [String: EvaluationResult] = [:]
            for job in request.jobs { results[job.name] = .derivations(["/nix/store/\(String(repeating: "b", count: 32))-\(job.name).drv"]) }
            return EvaluationReport(results: results, summary: "evaluated", duration: .zero)
        }
        func run(_ job: JobRun, log: any LogSink, stop: StopSignal) async -> JobReport {
            let started = ContinuousClock.now
            let batch = job.name == "stream" ? 400 : PageLoad.lines
            var written = 0
            while written < PageLoad.lines {
                let text = (written..<min(PageLoad.lines, written + batch)).map {
                    "\u{1B}[32mline \($0 + 1)\u{1B}[0m of the \(job.name) job, some build output to read\n"
                }.joined()
                log.write(Array(text.utf8))
                written += batch
                if batch < PageLoad.lines { try? await Task.sleep(for: .milliseconds(20)) }
            }
            return JobReport(outcome: .succeeded, duration: ContinuousClock.now - started)
        }
    }

    static func run() async throws {
        guard WebDriver.isAvailable else {
            print("[pages] skipped: install chromium and chromium-driver (make deps does)")
            return
        }
        let directory = try TemporaryDirectory("kiln-bench-pages")
        defer { directory.remove() }
        let repository = try TestGitRepository(at: directory.appending("origin"))
        try repository.write(".kiln.yml", "jobs:\n  static: {build: .#static}\n")
        let first = try repository.commit("a chatty job")
        try IntakeLoad.secret.write(toFile: directory.appending("secret"), atomically: true, encoding: .utf8)
        try """
            server: {listen: "127.0.0.1:0", public-url: "http://kiln.bench"}
            storage: {data-dir: data}
            forges:
              github: {type: github, webhook-secret-files: [secret], status-api: none}
            repositories:
              - {forge: github, name: bench/hello, clone-url: "file://\(repository.path)"}
            """.write(toFile: directory.appending("kiln.yaml"), atomically: true, encoding: .utf8)
        let configuration = try KilnConfiguration.load(path: directory.appending("kiln.yaml"))
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let group = try await KilnServer.make(
            configuration, logger: Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() }), executor: ChattyExecutor()
        ) { port in
            continuation.yield(port)
            continuation.finish()
        }
        let server = Task { try await group.run() }
        let url = "http://127.0.0.1:\(await ports.first { _ in true }!)"
        let browser = try await WebDriver()

        // A finished build's page: first paint, five times.
        let built = try await push(url, sha: first, before: nil)
        try await waitFor("the build to end", seconds: 60) { try await state(url, built) == "succeeded" }
        var paints: [Double] = []
        for _ in 0..<5 {
            try await browser.open("\(url)/builds/\(built)")
            let paint = try await browser.run(
                "var e=performance.getEntriesByName('first-contentful-paint');return e.length?e[0].startTime:-1") as? Double ?? -1
            paints.append(paint)
        }
        let rows = try await browser.run("return document.querySelectorAll('span.l').length") as? Int ?? 0

        // A running job's log: 40,000 lines streamed in batches; the most chunks kept in the DOM.
        try repository.write(".kiln.yml", "jobs:\n  stream: {build: .#stream}\n")
        let streamed = try await push(url, sha: try repository.commit("a streaming job"), before: first)
        try await waitFor("the job to run", seconds: 60) { try await state(url, streamed) == "running" }
        try await browser.open("\(url)/builds/\(streamed)")
        var most = 0
        var lastLine = ""
        let started = ContinuousClock.now
        while ContinuousClock.now - started < .seconds(60) {
            let sample = try await browser.run(
                "var p=document.querySelector('pre[data-follow]');if(!p){return [-1,'']}var t=p.lastChild?p.lastChild.textContent:'';return [p.childNodes.length,t]")
                as? [Any] ?? []
            let count = sample.first as? Int ?? -1
            if count < 0 { break }  // the job ended and the page reloaded
            most = max(most, count)
            lastLine = sample.last as? String ?? ""
            try await Task.sleep(for: .milliseconds(50))
        }
        let streaming = ContinuousClock.now - started
        await browser.quit()
        await group.triggerGracefulShutdown()
        _ = try? await server.value

        print("[pages] build page with a \(lines)-line log in headless Chromium (\(rows) line elements rendered: head and tail)")
        print(String(format: "[pages]   first contentful paint: median %.0f ms (runs: %@)", median(paints), paints.map { String(format: "%.0f", $0) }.joined(separator: ", ")))
        print("[pages] \(lines) lines streamed into a running job's log in batches of 400 every 20 ms: at most \(most) DOM chunks kept,"
            + " followed for \(HumanDuration.format(streaming)); last chunk seen ends \(lastLine.suffix(40).debugDescription)")
    }

    static func push(_ url: String, sha: String, before: String?) async throws -> Int {
        let body = Array("""
            {"ref":"refs/heads/main","before":"\(before ?? String(repeating: "0", count: 40))","after":"\(sha)","created":\(before == nil),"deleted":false,"repository":{"id":1,"full_name":"bench/hello"},"head_commit":{"id":"\(sha)"}}
            """.utf8)
        let answer = try await HTTPTestClient.send(
            "POST", "\(url)/webhooks/github", headers: WebhookSigner.githubHeaders(event: "push", body: body, secret: IntakeLoad.secret), body: body)
        guard answer.status == 202, let id = answer.json["build_id"] as? Int else { throw WebDriverError("push answered \(answer.status)") }
        return id
    }

    static func state(_ url: String, _ build: Int) async throws -> String {
        try await HTTPTestClient.send("GET", "\(url)/api/v1/builds/\(build)").json["state"] as? String ?? ""
    }

    static func waitFor(_ what: String, seconds: Int, _ condition: () async throws -> Bool) async throws {
        let started = ContinuousClock.now
        while try await !condition() {
            guard ContinuousClock.now - started < .seconds(seconds) else { throw WebDriverError("\(what) took over \(seconds) s") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}
