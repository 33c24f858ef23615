import Foundation
import Testing
import Yams

@testable import WaypostServer

/// The repository's `docs/openapi.yaml`.
private let documentPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("docs/openapi.yaml").path

@Suite("the OpenAPI document served at /openapi.json is docs/openapi.yaml (SPEC §14)")
struct OpenAPIDocumentTests {
    @Test("the embedded JSON and docs/openapi.yaml say the same; run scripts/openapi-embed.sh after editing the YAML")
    func embeddedMatchesTheFile() throws {
        let yaml = try String(contentsOfFile: documentPath, encoding: .utf8)
        let fromFile = try #require(try Yams.load(yaml: yaml) as? [String: Any])
        let served = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
        #expect(NSDictionary(dictionary: fromFile).isEqual(to: served), "docs/openapi.yaml changed: run scripts/openapi-embed.sh")
        #expect(served["openapi"] as? String == "3.1.0")
    }
}
