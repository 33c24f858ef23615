import NIOCore
import NIOSSL
import Synchronization
import WaypostCore

/// TLS at the intake (SPEC §14): the certificate chain and key of `tls`, read from their PEM
/// files, TLS 1.2 and 1.3, HTTP/1.1. Each new connection takes the context current when it is
/// accepted, so ``reload()`` (SIGHUP) changes what new connections present and leaves the open
/// ones as they are.
public final class IntakeTLS: Sendable {
    public let files: TLSFiles
    private let current: Mutex<NIOSSLContext>

    /// Reads the files and makes a context of them.
    ///
    /// - Throws: ``IntakeTLSError`` naming the file that is missing or not PEM, or saying that
    ///   the key is not the certificate's.
    public init(files: TLSFiles) throws(IntakeTLSError) {
        self.files = files
        current = Mutex(try Self.context(files))
    }

    /// The context for a connection accepted now.
    var context: NIOSSLContext { current.withLock { $0 } }

    /// Reads the files again; on failure the current context stays and the error says why.
    public func reload() throws(IntakeTLSError) {
        let fresh = try Self.context(files)
        current.withLock { $0 = fresh }
    }

    private static func context(_ files: TLSFiles) throws(IntakeTLSError) -> NIOSSLContext {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certFile)
        } catch {
            throw IntakeTLSError(message: "tls.cert_file \(files.certFile): cannot read a PEM certificate chain: \(error)")
        }
        guard !chain.isEmpty else { throw IntakeTLSError(message: "tls.cert_file \(files.certFile): holds no certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: files.keyFile, format: .pem)
        } catch {
            throw IntakeTLSError(message: "tls.key_file \(files.keyFile): cannot read a PEM private key: \(error)")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        configuration.applicationProtocols = ["http/1.1"]
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw IntakeTLSError(
                message: "tls.key_file \(files.keyFile) is not the private key of tls.cert_file \(files.certFile)'s certificate (\(error))")
        }
    }
}

/// The intake's certificate or key cannot be used; the message names the file.
public struct IntakeTLSError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
