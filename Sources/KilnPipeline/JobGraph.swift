/// Dependency order of jobs (`needs`).
public enum JobGraph {
    /// A cycle among the jobs' `needs`, as job names in order, or nil when there is none.
    /// Unknown names are ignored here; `PipelineFile` reports them separately.
    public static func findCycle(_ jobs: [JobSpec]) -> [String]? {
        let needs = Dictionary(jobs.map { ($0.name, $0.needs) }, uniquingKeysWith: { first, _ in first })
        enum Mark { case visiting, done }
        var marks: [String: Mark] = [:]
        var stack: [String] = []

        func visit(_ name: String) -> [String]? {
            switch marks[name] {
            case .done: return nil
            case .visiting:
                let start = stack.firstIndex(of: name)!
                return Array(stack[start...])
            case nil: break
            }
            marks[name] = .visiting
            stack.append(name)
            for need in needs[name] ?? [] where needs[need] != nil {
                if let cycle = visit(need) { return cycle }
            }
            stack.removeLast()
            marks[name] = .done
            return nil
        }
        for job in jobs {
            if let cycle = visit(job.name) { return cycle }
        }
        return nil
    }
}
