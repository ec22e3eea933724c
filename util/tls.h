// Transport security of the gRPC links (client to storage, client to lease
// manager): mutual TLS under one cluster CA, which tools/dfuse-certs makes
// together with each process's certificate, or plain text.
//
// The daemons' command lines want TLS: plain text needs --plaintext, and no
// listener or channel ever uses it off loopback (anyone who reaches such a
// port would read and write the whole export).
//
// With TLS each side presents a certificate the CA issued and checks the
// other's (chain, validity dates, and on the client the server's name or
// address against the certificate's subjectAltName). A process's identity is
// the common name of its certificate.
#ifndef DFUSE_UTIL_TLS_H_
#define DFUSE_UTIL_TLS_H_

#include <memory>
#include <string>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

namespace CLI {
class App;
}

namespace dfuse {

struct TlsFiles {
  std::string ca;    // PEM: the cluster CA, which every peer's certificate must chain to
  std::string cert;  // PEM: this process's certificate
  std::string key;   // PEM: its private key
  // Command lines only: plain text was asked for (--plaintext). A library
  // user that gives no files gets plain text, on loopback only.
  bool plaintext = false;

  bool enabled() const { return !ca.empty() || !cert.empty() || !key.empty(); }
};

// Adds --tls-ca, --tls-cert, --tls-key and --plaintext to a command line.
void AddTlsOptions(CLI::App* app, TlsFiles* tls);

// After parsing: either all of TLS or --plaintext, not both, not neither.
// False with a one-line *error.
bool CheckTransportChoice(const TlsFiles& tls, std::string* error);

// Whether a plain-text link to or on `address` (HOST:PORT) is allowed:
// always with TLS, only on loopback without. False with a one-line *error.
bool CheckPlaintextAddress(const TlsFiles& tls, const std::string& address, std::string* error);

// Credentials for a server listening on `listen` (HOST:PORT): mutual TLS if
// `tls` is enabled (then all three files are needed, and clients without a
// certificate from the CA are refused), plain text otherwise, on a loopback
// address only. Null with a one-line *error if a file is missing or
// unreadable, or plain text was asked for off loopback.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const TlsFiles& tls,
                                                           const std::string& listen,
                                                           std::string* error);

// Credentials for a channel to a server, as ServerCredentials.
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const TlsFiles& tls,
                                                             std::string* error);

// Who is calling: the common name of the client's certificate under TLS,
// "" in plain text.
std::string PeerIdentity(const grpc::ServerContext& ctx);

// True if HOST:PORT names a loopback host (127.0.0.0/8, [::1], localhost).
bool IsLoopbackAddress(const std::string& address);

}  // namespace dfuse

#endif  // DFUSE_UTIL_TLS_H_
