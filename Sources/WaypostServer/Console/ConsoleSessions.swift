import Crypto
import Foundation

/// The console's sessions (SPEC §13): a cookie signed with a key of this process (so a restart
/// signs everyone out), expiring after ``lifetime``, and for each session a CSRF token that
/// every state-changing request must carry. Nothing is stored: both are checked by their MAC.
struct ConsoleSessions: Sendable {
    static let cookieName = "waypost_console"
    static let lifetime: Int64 = 12 * 3600

    private let key: SymmetricKey

    init(key: SymmetricKey = SymmetricKey(size: .bits256)) {
        self.key = key
    }

    /// A new session, valid from `now` (seconds since the Unix epoch): its cookie value, and
    /// its nonce (what ``session(cookieHeader:now:)`` reads back from the cookie).
    func issue(now: Int64) -> (cookie: String, session: String) {
        let nonce = Data(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) }).base64URL
        let payload = "\(now + Self.lifetime).\(nonce)"
        return (payload + "." + mac(payload), nonce)
    }

    /// The session of a `Cookie` header's value, if it holds one that this process signed and
    /// that has not expired: its nonce.
    func session(cookieHeader: String?, now: Int64) -> String? {
        guard let cookieHeader else { return nil }
        for pair in cookieHeader.split(separator: ";") {
            let trimmed = pair.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix(Self.cookieName + "=") else { continue }
            let value = trimmed.dropFirst(Self.cookieName.count + 1)
            let parts = value.split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 3, let expires = Int64(parts[0]), expires > now,
                AdminHandler.constantTimeEquals(Array(mac("\(parts[0]).\(parts[1])").utf8), Array(parts[2].utf8))
            else { continue }
            return String(parts[1])
        }
        return nil
    }

    /// The CSRF token of session `nonce`.
    func csrfToken(session nonce: String) -> String {
        mac("csrf." + nonce)
    }

    /// Whether `token` is session `nonce`'s CSRF token (compared in constant time).
    func checkCSRF(_ token: String?, session nonce: String) -> Bool {
        guard let token else { return false }
        return AdminHandler.constantTimeEquals(Array(token.utf8), Array(csrfToken(session: nonce).utf8))
    }

    /// The `Set-Cookie` value of `cookie`: HttpOnly, SameSite=Strict, for the whole listener.
    static func setCookie(_ cookie: String) -> String {
        "\(cookieName)=\(cookie); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(lifetime)"
    }

    /// The `Set-Cookie` value that ends the session in the browser.
    static let clearCookie = "\(cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"

    private func mac(_ text: String) -> String {
        Data(HMAC<SHA256>.authenticationCode(for: Array(text.utf8), using: key)).base64URL
    }
}

extension Data {
    /// Base64 with `-` and `_`, without padding: safe in a cookie and a form field.
    var base64URL: String {
        base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
