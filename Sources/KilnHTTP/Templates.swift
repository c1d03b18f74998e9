import Mustache

/// The pages' Mustache templates, compiled into the binary (no files to install, no build step).
/// `{{value}}` escapes HTML; `{{{value}}}` is only ever used for HTML Kiln rendered itself.
enum Templates {
    /// Every template, by name; a template that does not parse stops the process at first use,
    /// which the template tests catch.
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        for (name, text) in [
            ("layout", layout), ("rows", rows), ("index", index), ("build", build), ("repository", repository),
            ("signIn", signIn), ("message", message), ("cache", cache),
        ] {
            do {
                try library.register(text, named: name)
            } catch {
                preconditionFailure("template \(name) does not parse: \(error)")
            }
        }
        return library
    }()

    static let layout = """
        <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}}</title>{{#refresh}}<noscript><meta http-equiv="refresh" content="3"></noscript>{{/refresh}}
        <style>{{{style}}}</style>{{{script}}}</head>
        <body><header><a href="/" class="home">Kiln</a> <a href="/cache">Cache</a>
        {{#session}}<span class="who">signed in · {{scope}}</span> <form method="post" action="/sign-out" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button>Sign out</button></form>{{/session}}
        {{^session}}<a href="/sign-in">Sign in</a>{{/session}}</header>
        <main>{{{content}}}</main></body></html>

        """

    static let rows = """
        {{#hasBuilds}}<table class="builds"><thead><tr><th>Build</th><th>Repository</th><th>Ref</th><th>Commit</th><th>State</th><th>Time</th><th>When</th></tr></thead><tbody>
        {{#builds}}<tr><td><a href="/builds/{{id}}">#{{id}}</a></td><td><a href="{{repositoryURL}}">{{repository}}</a></td>
        <td><code>{{ref}}</code><div class="trigger">{{trigger}}</div></td>
        <td><code>{{sha}}</code> {{title}}</td><td class="{{state}}"><span aria-hidden="true">{{icon}}</span> {{stateText}}</td>
        <td>{{timing}}</td><td><time datetime="{{iso}}" title="{{iso}}">{{ago}}</time></td></tr>
        {{/builds}}</tbody></table>{{/hasBuilds}}
        {{^hasBuilds}}<p>{{empty}}</p>{{/hasBuilds}}
        {{#older}}<p><a href="{{older}}" rel="next">Older builds →</a></p>{{/older}}
        """

    static let index = """
        <h1>Builds</h1>
        <form method="get" action="/" class="filters">
        <label>Repository <input name="repository" value="{{repository}}" placeholder="owner/name"></label>
        <label>Branch <input name="branch" value="{{branch}}" placeholder="main"></label>
        <label>State <select name="state"><option value="">any</option>{{#states}}<option{{#selected}} selected{{/selected}}>{{name}}</option>{{/states}}</select></label>
        <button>Filter</button></form>
        {{> rows}}
        """

    static let build = """
        <h1>Build #{{id}} <span class="{{state}}"><span aria-hidden="true">{{icon}}</span> {{stateText}}</span></h1>
        <p><a href="{{repositoryURL}}">{{repository}}</a> · <code>{{ref}}</code> · {{trigger}} · <code title="{{fullSHA}}">{{sha}}</code> {{title}}</p>
        <p>{{summary}} <span class="timing">({{timing}})</span></p>
        {{#controls}}<div class="controls">
        {{#canCancel}}<form method="post" action="/builds/{{id}}/cancel" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button>Cancel</button></form>{{/canCancel}}
        {{#canApprove}}<form method="post" action="/builds/{{id}}/approve" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><input type="hidden" name="sha" value="{{fullSHA}}"><button>Approve {{sha}}</button></form>{{/canApprove}}
        <form method="post" action="/builds/{{id}}/rerun" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button>Re-run</button></form>
        {{#canRerunFailed}}<form method="post" action="/builds/{{id}}/rerun-failed" class="inline"><input type="hidden" name="csrf" value="{{csrf}}"><button>Re-run failed jobs</button></form>{{/canRerunFailed}}
        </div>{{/controls}}
        {{#hasDiagnostics}}<h2>Pipeline file problems</h2><pre>{{#diagnostics}}{{.}}
        {{/diagnostics}}</pre>{{/hasDiagnostics}}
        {{#hasJobs}}<h2>Jobs</h2><table class="jobs"><thead><tr><th>Job</th><th>Needs</th><th>State</th><th>Summary</th><th>Time</th><th>CPU</th><th>Peak memory</th><th>Outputs</th></tr></thead><tbody>
        {{#jobs}}<tr><td><a href="#job-{{id}}">{{name}}</a></td><td>{{needs}}</td><td class="{{state}}"><span aria-hidden="true">{{icon}}</span> {{stateText}}</td>
        <td>{{summary}}</td><td>{{took}}</td><td>{{cpu}}</td><td>{{memory}}</td><td>{{#outputs}}<code>{{path}}</code> {{size}}<br>{{/outputs}}</td></tr>
        {{/jobs}}</tbody></table>{{/hasJobs}}
        {{#hasStatuses}}<h2>Commit statuses</h2><table><thead><tr><th>Context</th><th>State</th><th>Description</th><th>Delivery</th></tr></thead><tbody>
        {{#statuses}}<tr><td><code>{{context}}</code></td><td class="{{state}}">{{state}}</td><td>{{description}}</td><td class="{{delivery}}">{{deliveryText}}</td></tr>
        {{/statuses}}</tbody></table>{{/hasStatuses}}
        {{#jobs}}<section id="job-{{id}}" class="job"><h3><span class="{{state}}">{{icon}}</span> {{name}} · <a href="/api/v1/jobs/{{id}}/log">raw log</a> · <a href="/api/v1/jobs/{{id}}/log" download="job-{{id}}.log">download</a></h3>
        {{#machines}}<p>Built on {{machines}}</p>{{/machines}}
        {{#cache}}<p>Binary cache: {{cache}}</p>{{/cache}}
        {{#image}}<p>Image: {{image}}</p>{{/image}}
        {{{logs}}}</section>
        {{/jobs}}
        """

    static let repository = """
        <h1>{{repository}} <img src="{{badge}}" alt="build status"></h1>
        <p>Badge: <code>![Kiln]({{publicURL}}{{badge}})</code></p>
        {{#hasBranches}}<h2>Branches</h2><table><thead><tr><th>Ref</th><th>Last build</th><th>State</th><th>When</th></tr></thead><tbody>
        {{#branches}}<tr><td><code>{{ref}}</code></td><td><a href="/builds/{{id}}">#{{id}}</a> <code>{{sha}}</code> {{title}}</td>
        <td class="{{state}}"><span aria-hidden="true">{{icon}}</span> {{stateText}}</td><td><time datetime="{{iso}}" title="{{iso}}">{{ago}}</time></td></tr>
        {{/branches}}</tbody></table>{{/hasBranches}}
        <h2>Builds</h2>
        {{> rows}}
        """

    static let cache = """
        <h1>Cache</h1>
        <form method="get" action="/cache" class="filters"><label>Window <input name="window" value="{{window}}" placeholder="1d"></label><button>Show</button></form>
        <h2>Local store</h2>
        <table><tbody><tr><th>Paths</th><td>{{storePaths}}</td></tr><tr><th>Size (NAR)</th><td>{{storeSize}}</td></tr>
        <tr><th>Free space</th><td>{{free}}</td></tr>
        <tr><th>Kept outputs</th><td>{{kept}} builds (the last {{keepOutputs}} successful builds of each branch)</td></tr></tbody></table>
        <h2>Over the last {{window}}</h2>
        <table><tbody><tr><th>Jobs</th><td>{{jobs}}</td></tr><tr><th>Derivations built</th><td>{{built}}</td></tr>
        <tr><th>Store paths substituted</th><td>{{substituted}}</td></tr><tr><th>Derivations already valid</th><td>{{valid}}</td></tr>
        <tr><th>Waited for another job's build</th><td>{{waited}}</td></tr><tr><th>Hit rate</th><td>{{hitRate}}</td></tr>
        <tr><th>Binary cache pushes</th><td>{{pushes}} ({{pushed}} of closures)</td></tr></tbody></table>
        {{#binaryCache}}<h2>Binary cache</h2>
        <table><tbody><tr><th>URL</th><td><code>{{url}}</code></td></tr>
        {{#measured}}<tr><th>Store paths</th><td>{{nars}}</td></tr><tr><th>Size</th><td>{{size}}</td></tr>
        {{#oldest}}<tr><th>Oldest</th><td><code>{{path}}</code> <time datetime="{{iso}}">{{iso}}</time></td></tr>{{/oldest}}
        {{#newest}}<tr><th>Newest</th><td><code>{{path}}</code> <time datetime="{{iso}}">{{iso}}</time></td></tr>{{/newest}}{{/measured}}
        {{^measured}}<tr><th>Contents</th><td>not readable from here: the pushes above are what Kiln knows</td></tr>{{/measured}}
        </tbody></table>{{/binaryCache}}
        {{#hasWarm}}<h2>Warm-up</h2><p class="{{warmState}}">{{warmState}}{{#warmProgress}} — {{warmProgress}}{{/warmProgress}}</p>
        {{#warmError}}<pre>{{warmError}}</pre>{{/warmError}}
        <ul>{{#warmInstallables}}<li><code>{{.}}</code></li>{{/warmInstallables}}</ul>{{/hasWarm}}
        """

    static let signIn = """
        <h1>Sign in</h1>
        {{#error}}<p class="failed" role="alert">{{error}}</p>{{/error}}
        <form method="post" action="/sign-in"><label>Token <input type="password" name="token" autocomplete="off" required autofocus></label>
        <button>Sign in</button></form>
        <p>Use an API token (<code>kiln token create --scope control</code>) or the admin token. A <code>read</code> token only reads; <code>control</code> and <code>admin</code> show the buttons.</p>
        """

    static let message = """
        <h1>{{heading}}</h1><p>{{text}}</p>
        """

    static let style = """
        body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:80em;padding:0 1em 2em;color:#222}
        header{display:flex;gap:1em;align-items:center;padding:.6em 0;border-bottom:1px solid #ddd;margin-bottom:1em}.home{font-weight:600}
        table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}
        pre{background:#111;color:#eee;padding:1em;overflow-x:auto;white-space:pre-wrap;font-size:12px}
        .succeeded,.delivered{color:#17702d}.failed,.timed_out,.errored,.dropped{color:#b3261e}.cancelled,.skipped{color:#7a5b00}
        .queued,.planning,.running,.pending,.awaiting_approval{color:#1a56b3}code{font-size:13px}.trigger,.timing{color:#666;font-size:12px}
        .inline{display:inline}.filters{display:flex;gap:1em;flex-wrap:wrap;margin-bottom:1em}.controls{margin:1em 0;display:flex;gap:.5em}
        details{margin:.5em 0}summary{cursor:pointer;font-weight:600}section.job{margin:1.5em 0}
        pre.lines{padding:.5em 0;white-space:pre-wrap}.l{display:block;padding:0 1em 0 4.5em;text-indent:-3.5em}.l:target{background:#333}.l[hidden]{display:none}
        .n{display:inline-block;width:3em;margin-right:.5em;text-align:right;color:#888;text-decoration:none;user-select:none}
        .first-error{background:#5a1d1d}.phase{position:sticky;top:0;display:block;background:#2a2a2a;color:#9cf;padding:0 1em;font-weight:bold}
        .gap{display:block;padding:.3em 1em}.gap a{color:#9cf}.log-search{margin:.3em 0;width:20em}
        .a0{color:#000}.a1{color:#e05252}.a2{color:#4fb04f}.a3{color:#d6b43a}.a4{color:#5b8def}.a5{color:#c678dd}.a6{color:#3fb5c5}.a7{color:#ddd}.ab{font-weight:bold}
        a:focus,button:focus,summary:focus,input:focus,select:focus{outline:2px solid #1a56b3;outline-offset:2px}
        """
}
