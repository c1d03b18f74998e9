/// Database id of a build.
public typealias BuildID = Int64
/// Database id of a job.
public typealias JobID = Int64
/// Database id of a configured repository; also the name of its mirror directory.
public typealias RepositoryID = Int64
