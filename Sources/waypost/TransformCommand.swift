import ArgumentParser
import Foundation
import WaypostCore
import WaypostTransform

/// `waypost transform` (SPEC §6, §11): runs a destination's `transform`, or with `--reply` the
/// route's `reply`, over a document on standard input, the way the server would, and prints
/// what the destination would be sent (or what the source would get).
struct Transform: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Try a route's transform (or reply) program on a document read from standard input.",
        discussion: """
            The input is the program's input document: {method, path, query, headers, body} for a
            transform, {status, headers, body, id, attempts} with --reply. Prints the request the
            destination would be sent, or the answer the waiting source would get, as JSON.
            Exit 1 when the program fails (jq's message on standard error).
            """)

    @Option(help: "The YAML configuration file.")
    var config: String

    @Option(help: "The route whose program runs.")
    var route: String

    @Option(help: "The destination whose transform runs (default: the route's reply_from destination).")
    var destination: String?

    @Flag(help: "Run the route's reply program instead of a transform.")
    var reply = false

    /// The largest input read from standard input.
    static let maximumInputBytes = 64 << 20

    func run() throws {
        let settings = try loadConfig(config)
        guard let route = settings.routes.first(where: { $0.name == self.route }) else {
            throw ValidationError("--route: \(config) has no route named \"\(self.route)\"")
        }
        let table = ProgramTable(settings)
        let index: Int?
        if reply {
            guard destination == nil else {
                throw ValidationError("--destination: a reply program belongs to the route, not a destination")
            }
            guard let found = table.replies[route.name] else { try fail("route \(route.name) has no reply program") }
            index = found
        } else {
            let target =
                try destination.map { name in
                    guard let found = route.destinations.first(where: { $0.name == name }) else {
                        throw ValidationError("--destination: route \(route.name) has no destination named \"\(name)\"")
                    }
                    return found
                } ?? route.replyDestination
            index = table.transforms[route.key(of: target)]
            if index == nil { try fail("\(route.key(of: target)) has no transform") }
        }
        let program = table.programs[index!]
        let input = FileHandle.standardInput.readData(ofLength: Self.maximumInputBytes + 1)
        guard input.count <= Self.maximumInputBytes else { try fail("the input is larger than 64 MiB") }
        guard let document = JSONValue.parse(input) else { try fail("the input is not JSON") }

        let setup = TransformSetup(
            programs: [program.text], memoryLimit: settings.transformMemory, timeout: settings.transformTimeout, workers: 1)
        let pool: TransformPool
        do {
            try TransformPool.compile(setup)
            pool = try TransformPool(setup)
        } catch .compile(let failures) {
            printError(
                "waypost: invalid configuration: \(program.path): the jq program does not compile: \(failures.map(\.1).joined(separator: "; "))"
            )
            throw ExitCode.invalidConfiguration
        } catch .start(let message) {
            try fail(message)
        }
        defer { pool.shutdown() }

        if reply {
            switch pool.run(TransformRequest(program: 0, mode: .document, input: Array(input))) {
            case .success(.document(let output)):
                do {
                    _ = try ReplyDocument.answer(output)
                } catch {
                    try fail(error.message)
                }
                print(output)
            case .success(.none): try fail("the reply program produced no output, or null: the source would get a 502")
            case .success(let other): try fail(Self.describe(other))
            case .failure(let failure): try fail(failure.description)
            }
            return
        }
        let request: TransformDocument
        do {
            request = try TransformDocument(document: document)
        } catch {
            try fail(error.message)
        }
        switch pool.run(TransformRequest(transforming: request, program: 0)) {
        case .success(.shaped(let output)):
            var body: [UInt8]?
            if case .replaced(let bytes) = output.body { body = bytes }
            do {
                print(String(decoding: try request.applying(rest: output.rest, body: body).input.json, as: UTF8.self))
            } catch {
                try fail("the output cannot be sent: \(error.message)")
            }
        case .success(.none):
            print("null")
            printError("waypost: the output is null or empty: the delivery would be filtered")
        case .success(let other): try fail(Self.describe(other))
        case .failure(let failure): try fail(failure.description)
        }
    }

    private static func describe(_ answer: TransformAnswer) -> String {
        if case .error(let message) = answer { return message }
        return "the worker answered something unexpected"
    }

    private func fail(_ message: String) throws -> Never {
        printError("waypost: transform failed: \(message)")
        throw ExitCode.failure
    }
}

/// The hidden `transform-worker` subcommand: a transform worker process (``TransformWorker``),
/// started by the server itself over pipes. Not for people.
struct TransformWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transform-worker", abstract: "Run jq programs for a Waypost server (started by the server).", shouldDisplay: false)

    func run() throws {
        TransformWorker.main()
    }
}
