// A short smoke run of every fuzz target (scripts/fuzz.sh runs them for minutes under libFuzzer):
// the seed corpus, then mutations of it, so a reintroduced crash on a known shape of input fails
// the suite. A trap here ends the test process, which fails the run.

import Foundation
import Testing
import WaypostFuzzing
import WaypostTestSupport

private let corpusRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("scripts/fuzz/corpus")

/// Bytes that matter to the parsers, for insertion.
private let interesting: [[UInt8]] =
    [
        "\r\n", "\r\n\r\n", ":", "=", "&", "%", "%zz", "?", "/", "..", "%2e", "\u{0}", "9999999999999999999999", "-1", "\"", "{", "}", "[",
        "]",
        "chunked", "Content-Length: ", "Transfer-Encoding: ", "Host: ", " GMT", "36501d", "ms", "~", "\\u", "\u{FF}",
    ].map { Array($0.utf8) } + [[0xFF, 0xFE], [0xC3], [0xED, 0xA0, 0x80]]

/// One mutation of `seed`: byte flips, insertions of interesting bytes, cuts, duplications.
func mutate(_ seed: [UInt8], _ generator: inout SplitMix) -> [UInt8] {
    var bytes = seed
    for _ in 0..<Int.random(in: 1...4, using: &generator) {
        let position = bytes.isEmpty ? 0 : Int.random(in: 0...bytes.count, using: &generator)
        switch Int.random(in: 0..<5, using: &generator) {
        case 0 where !bytes.isEmpty:
            bytes[min(position, bytes.count - 1)] = UInt8.random(in: 0...255, using: &generator)
        case 1:
            bytes.insert(contentsOf: interesting.randomElement(using: &generator)!, at: position)
        case 2:
            bytes = Array(bytes.prefix(position))
        case 3 where !bytes.isEmpty:
            let end = Int.random(in: position...bytes.count, using: &generator)
            bytes.insert(contentsOf: bytes[position..<end], at: end)
        default:
            bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...8, using: &generator)))
        }
    }
    return bytes
}

@Suite("Fuzz targets: a smoke run of each over its seed corpus and mutations of it")
struct FuzzSmokeTests {
    @Test("every target has a seed corpus")
    func corpora() throws {
        for name in FuzzTargets.names {
            let files = try FileManager.default.contentsOfDirectory(atPath: corpusRoot.appendingPathComponent(name).path)
            #expect(!files.isEmpty, "scripts/fuzz/corpus/\(name) is empty")
        }
    }

    @Test("the target runs its seeds and 1,500 mutations without a trap", arguments: FuzzTargets.names)
    func smoke(name: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("waypost-fuzz-smoke-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let target = try #require(try await FuzzTargets.make(name, directory: directory))
        let folder = corpusRoot.appendingPathComponent(name)
        let seeds = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted().map {
            Array(try Data(contentsOf: folder.appendingPathComponent($0)))
        }
        for seed in seeds { target(seed) }
        var generator = SplitMix(seed: UInt64(name.utf8.reduce(7) { $0 &* 31 &+ UInt64($1) }))
        var last: [UInt8] = []
        for round in 0..<1500 {
            // Each mutation starts from a seed or, every other round, from the previous mutation.
            let base = round % 2 == 1 && !last.isEmpty ? last : seeds[round % seeds.count]
            last = mutate(base, &generator)
            target(last)
        }
    }
}
