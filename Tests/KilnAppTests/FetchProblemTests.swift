import Testing

@testable import KilnApp

/// What an ad-hoc build's failed fetch is told to do, from what libgit2 said.
@Suite struct FetchProblemTests {
    @Test func aRefusedConnectionIsNotTakenForMissingCredentials() {
        // The fetch's ref names a UUID, which may hold the digits 401.
        let refused = "cannot fetch +refs/heads/main:refs/heads/adhoc/401ec62d-9550-4ab9-a234-3ce1834b8b49 from "
            + "http://127.0.0.1:1/app.git: failed to connect to 127.0.0.1: Connection refused"
        #expect(BuildService.fetchProblem(refused, hasToken: false) == refused + "; check git.url and that this server can reach it")
    }

    @Test func a401AsksForCredentials() {
        #expect(BuildService.fetchProblem("unexpected http status code: 401", hasToken: false).hasSuffix("send git.token or git.token-file"))
        #expect(BuildService.fetchProblem("unexpected http status code: 401", hasToken: true).hasSuffix("may read the repository"))
    }
}
