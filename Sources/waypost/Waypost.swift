import ArgumentParser

@main
struct Waypost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "waypost",
        abstract: "A persistent store-and-forward proxy for webhooks.",
        discussion: """
            Every accepted request is committed to a SQLite journal before it is answered.
            Exit codes: 0 success, 1 an operation failed, 64 bad flags, 78 invalid configuration.
            """,
        subcommands: [
            Serve.self, Status.self, List.self, Show.self, Replay.self, Purge.self, CheckConfig.self, Transform.self,
            TransformWorkerCommand.self,
        ]
    )
}

/// Exit code 78 (EX_CONFIG): the configuration is invalid.
extension ExitCode {
    static let invalidConfiguration = ExitCode(78)
}
