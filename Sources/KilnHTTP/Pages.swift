import Foundation
import Hummingbird
import KilnCore
import KilnPipeline
import Mustache
import NIOCore

/// The web pages: Mustache templates (`Templates`) filled from views built here. Every value is
/// escaped by the template; the only raw HTML is Kiln's own (the ANSI-coloured log). Scripts run
/// only with the page's nonce; everything works without them.
enum Pages {
    /// A rendered page and the nonce its script carries.
    struct Page {
        var html: String
        var nonce: String
    }

    /// The signed-in browser a page is for, if any.
    typealias Session = Sessions.Session

    static func html(_ status: HTTPResponse.Status, _ page: Page) -> Response {
        Response(
            status: status,
            headers: [
                .contentType: "text/html; charset=utf-8",
                .contentSecurityPolicy:
                    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'nonce-\(page.nonce)'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ],
            body: .init(byteBuffer: ByteBuffer(string: page.html)))
    }

    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }

    /// Renders template `name` inside the layout. With `live` (an `/api/v1/events` query) the page
    /// reloads when those events arrive (at most once a second), and jumps to `#first-error` once;
    /// with `refresh`, it reloads every 3 s without JavaScript.
    static func render(
        _ name: String, title: String, _ values: [String: Any], session: Session?, live: String? = nil, refresh: Bool = false
    ) -> Page {
        let nonce = UUID().uuidString.replacingOccurrences(of: "-", with: "")
        let content = Templates.library.render(values, withTemplate: name) ?? ""
        var layout: [String: Any] = [
            "title": title, "content": content, "style": Templates.style, "refresh": refresh,
            "script": script(live: live, nonce: nonce),
        ]
        if let session { layout["session"] = ["scope": session.scope.rawValue, "csrf": session.csrf] }
        return Page(html: Templates.library.render(layout, withTemplate: "layout") ?? "", nonce: nonce)
    }

    /// The page's script: follow the events of `live` (Kiln's own query of ids and type names,
    /// never a request's text), and open the first error.
    static func script(live: String?, nonce: String) -> String {
        var body = "var e=document.querySelector(\"[data-first-error]\");if(e&&!location.hash){e.scrollIntoView({block:\"center\"})}" + follow + more + search
        if let live {
            // The types the query names are the ones that reload the page.
            let types = live.split(separator: "&").first { $0.hasPrefix("types=") }.map { $0.dropFirst(6).split(separator: ",").map(String.init) } ?? []
            body += "var s=new EventSource(\"/api/v1/events?\(live)\"),t=null;function r(){if(!t){t=setTimeout(function(){location.reload()},1000)}}"
                + types.map { "s.addEventListener(\"\($0)\",r);" }.joined()
        }
        return "<script nonce=\"\(nonce)\">document.addEventListener(\"DOMContentLoaded\",function(){\(body)});</script>"
    }

    /// The middle of a long log, loaded by byte range when its button is pressed, as numbered lines.
    static let more = """
        document.querySelectorAll("button.more").forEach(function(b){b.addEventListener("click",function(){\
        fetch(b.getAttribute("data-src"),{headers:{Range:b.getAttribute("data-range")}}).then(function(r){return r.text()}).then(function(t){\
        var n=parseInt(b.getAttribute("data-first"),10),p=b.getAttribute("data-prefix"),f=document.createDocumentFragment();\
        t.replace(/\\n$/,"").split("\\n").forEach(function(x){var s=document.createElement("span");s.className="l";s.id=p+"-L"+n;\
        var a=document.createElement("a");a.className="n";a.href="#"+s.id;a.textContent=n;s.appendChild(a);\
        s.appendChild(document.createTextNode(x.replace(/\\x1b\\[[0-9;]*[A-Za-z]/g,"")+"\\n"));f.appendChild(s);n++});\
        var g=b.parentNode;g.parentNode.replaceChild(f,g)})})});
        """

    /// Search within a job's lines: lines without the text are hidden, and folded cards opened.
    static let search = """
        document.querySelectorAll("input.log-search").forEach(function(i){i.addEventListener("input",function(){\
        var q=i.value.toLowerCase(),c=i.closest(".job-log");c.querySelectorAll("span.l").forEach(function(s){\
        s.hidden=q!==""&&s.textContent.toLowerCase().indexOf(q)<0});if(q){c.querySelectorAll("details").forEach(function(d){d.open=true})}})});
        """

    /// Running jobs' logs grow in place: each `pre[data-follow]` reads its log's stream from the
    /// bytes it shows, appends what arrives once per animation frame (colour codes dropped; one
    /// cut off at a chunk's end waits for the rest), keeps at most 5,000 chunks, follows the end
    /// only while the reader is at the bottom, and resumes from the bytes it has when the stream
    /// breaks (up to five tries).
    static let follow = """
        document.querySelectorAll("pre[data-follow]").forEach(function(p){var base=p.getAttribute("data-follow").replace(/offset=\\d+/,""),\
        got=parseInt((p.getAttribute("data-follow").match(/offset=(\\d+)/)||[0,0])[1],10),tries=0;function follow(){\
        fetch(base+"offset="+got).then(function(r){var rd=r.body.getReader(),dc=new TextDecoder(),q="",pend=false;tries=0;\
        function flush(){pend=false;var bottom=(window.innerHeight+window.scrollY)>=document.body.scrollHeight-40;\
        var cut=q.lastIndexOf("\\x1b"),keep="";if(cut>=0&&!/^\\x1b\\[[0-9;]*[A-Za-z]/.test(q.slice(cut))){keep=q.slice(cut);q=q.slice(0,cut)}\
        p.appendChild(document.createTextNode(q.replace(/\\x1b\\[[0-9;]*[A-Za-z]/g,"")));q=keep;\
        while(p.childNodes.length>5000){p.removeChild(p.firstChild)}if(bottom){window.scrollTo(0,document.body.scrollHeight)}}\
        function pump(){return rd.read().then(function(x){if(x.done){return}got+=x.value.length;q+=dc.decode(x.value,{stream:true});\
        if(!pend){pend=true;requestAnimationFrame(flush)}return pump()})}return pump()}).catch(function(){\
        if(++tries<5){setTimeout(follow,1000*tries)}})}follow()});
        """

    static func message(_ status: String, _ text: String, session: Session? = nil) -> Page {
        render("message", title: status, ["heading": status, "text": text], session: session)
    }

    static func notFound(_ text: String, session: Session? = nil) -> Page { message("Not found", text, session: session) }

    // MARK: Build lists

    /// The build list; `eventsFrom` is the event log's head when it was read, so that the page
    /// hears of every change after what it shows.
    static func index(
        _ builds: [BuildRecord], query: BuildListQuery, older: String?, session: Session?, eventsFrom: Int64 = 0, now: Date = Date()
    ) -> Page {
        var values = list(builds, older: older, empty: "No builds yet. Point a forge's webhook at /webhooks/<forge> and push.", now: now)
        values["repository"] = query.repository ?? ""
        values["branch"] = query.branch ?? ""
        values["states"] = BuildState.allCases.map { ["name": $0.rawValue, "selected": $0 == query.state] }
        return render(
            "index", title: "Kiln builds", values, session: session,
            live: "last-event-id=\(eventsFrom)&types=build.queued,build.planned,build.started,build.finished",
            refresh: builds.contains { !$0.state.isFinal })
    }

    /// A repository's page: its branches' last builds, its builds, its badge.
    static func repository(
        forge: String, name: String, branches: [BuildRecord], builds: [BuildRecord], older: String?, publicURL: String,
        session: Session?, eventsFrom: Int64 = 0, now: Date = Date()
    ) -> Page {
        var values = list(builds, older: older, empty: "No builds of this repository yet.", now: now)
        values["repository"] = name
        values["badge"] = "/badge/\(forge)/\(name).svg"
        values["publicURL"] = publicURL
        values["hasBranches"] = !branches.isEmpty
        values["branches"] = branches.map { row($0, now: now) }
        return render(
            "repository", title: "\(name) · Kiln", values, session: session,
            live: "repository=\(percentEncoded(name))&last-event-id=\(eventsFrom)&types=build.queued,build.started,build.finished",
            refresh: builds.contains { !$0.state.isFinal })
    }

    static func list(_ builds: [BuildRecord], older: String?, empty: String, now: Date) -> [String: Any] {
        var values: [String: Any] = ["hasBuilds": !builds.isEmpty, "builds": builds.map { row($0, now: now) }, "empty": empty]
        if let older { values["older"] = older }
        return values
    }

    /// What a list shows of one build.
    static func row(_ build: BuildRecord, now: Date) -> [String: Any] {
        [
            "id": build.id, "repository": build.repository, "repositoryURL": "/\(build.forge)/\(build.repository)",
            "ref": GitRef(fullName: build.ref)?.shortName ?? build.ref, "trigger": trigger(build),
            "sha": CommitID.short(build.sha), "title": build.title ?? "", "state": build.state.rawValue,
            "stateText": build.state.rawValue.replacingOccurrences(of: "_", with: " "), "icon": icon(build.state),
            "timing": timing(build, now: now), "iso": iso(build.createdAt), "ago": ago(build.createdAt, now: now),
        ]
    }

    /// What started a build (an approval queues a pull request's build again: it shows as that).
    static func trigger(_ build: BuildRecord) -> String {
        // The forge's webhook never arrived: the reconciler found the head.
        if build.reconciled { return "reconciled " + event(build) }
        return event(build)
    }

    private static func event(_ build: BuildRecord) -> String {
        if let original = build.rerunOf { return "re-run of #\(original)" }
        if let adHoc = build.adHoc { return "API build: \(adHoc.origin)" + (build.service.map { " for \($0)" } ?? "") }
        if let pullRequest = build.pullRequest {
            return "pull request #\(pullRequest.number)" + (pullRequest.isFork ? " from a fork" : "")
        }
        if case .tag? = GitRef(fullName: build.ref) { return "tag push" }
        return "push"
    }

    /// How long a build has waited or run, or how long it took.
    static func timing(_ build: BuildRecord, now: Date) -> String {
        func since(_ date: Date) -> String { HumanDuration.format(.seconds(max(0, now.timeIntervalSince(date)))) }
        switch build.state {
        case .queued, .planning: return "queued for \(since(build.createdAt))"
        case .awaitingApproval: return "waiting for \(since(build.createdAt))"
        case .running: return "running for \(since(build.startedAt ?? build.createdAt))"
        case .succeeded, .failed, .errored, .cancelled, .skipped:
            let end = build.finishedAt ?? now
            return "took \(HumanDuration.format(.seconds(max(0, end.timeIntervalSince(build.startedAt ?? build.createdAt)))))"
        }
    }

    static func icon(_ state: BuildState) -> String {
        switch state {
        case .succeeded: return "✓"
        case .failed: return "✗"
        case .errored: return "⚠"
        case .cancelled: return "⊘"
        case .skipped: return "↷"
        case .running: return "●"
        case .queued, .planning: return "◌"
        case .awaitingApproval: return "⏸"
        }
    }

    static func icon(_ state: JobState) -> String {
        switch state {
        case .succeeded: return "✓"
        case .failed, .timedOut: return "✗"
        case .errored: return "⚠"
        case .cancelled: return "⊘"
        case .skipped: return "↷"
        case .running: return "●"
        case .queued: return "◌"
        }
    }

    static func iso(_ date: Date) -> String { date.formatted(.iso8601) }

    static func ago(_ date: Date, now: Date) -> String {
        let seconds = Int(max(0, now.timeIntervalSince(date)))
        switch seconds {
        case ..<10: return "just now"
        case ..<60: return "\(seconds) s ago"
        case ..<3600: return "\(seconds / 60) min ago"
        case ..<86400: return "\(seconds / 3600) h ago"
        default: return "\(seconds / 86400) d ago"
        }
    }

    static func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~/"))) ?? ""
    }
}
