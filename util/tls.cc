#include "util/tls.h"

#include <arpa/inet.h>

#include <fstream>
#include <sstream>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <CLI/CLI.hpp>

namespace dfuse {
namespace {

bool ReadPem(const std::string& path, const char* what, std::string* pem, std::string* error) {
  if (path.empty()) {
    *error = std::string("TLS needs --tls-ca, --tls-cert and --tls-key: ") + what + " is missing";
    return false;
  }
  std::ifstream in(path);
  std::stringstream s;
  if (in) s << in.rdbuf();
  if (!in || s.str().find("-----BEGIN ") == std::string::npos) {
    *error = std::string("cannot read the ") + what + " " + path + " (a PEM file)";
    return false;
  }
  *pem = s.str();
  return true;
}

struct Pems {
  std::string ca, cert, key;
};

bool ReadAll(const TlsFiles& tls, Pems* pems, std::string* error) {
  return ReadPem(tls.ca, "CA certificate (--tls-ca)", &pems->ca, error) &&
         ReadPem(tls.cert, "certificate (--tls-cert)", &pems->cert, error) &&
         ReadPem(tls.key, "private key (--tls-key)", &pems->key, error);
}

// The host part of HOST:PORT, without the brackets of an IPv6 address.
std::string HostOf(const std::string& address) {
  if (!address.empty() && address[0] == '[') {
    const size_t end = address.find(']');
    return end == std::string::npos ? address : address.substr(1, end - 1);
  }
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

}  // namespace

void AddTlsOptions(CLI::App* app, TlsFiles* tls) {
  app->add_option("--tls-ca", tls->ca, "cluster CA certificate (PEM; tools/dfuse-certs)")
      ->check(CLI::ExistingFile);
  app->add_option("--tls-cert", tls->cert, "this process's certificate (PEM), issued by the CA")
      ->check(CLI::ExistingFile);
  app->add_option("--tls-key", tls->key, "its private key (PEM)")->check(CLI::ExistingFile);
  app->add_flag("--plaintext", tls->plaintext,
                "no TLS: unencrypted and unauthenticated, on loopback addresses only (one "
                "machine: tests, benchmarks)");
}

bool CheckTransportChoice(const TlsFiles& tls, std::string* error) {
  if (tls.enabled() && tls.plaintext) {
    *error = "--plaintext and --tls-ca/--tls-cert/--tls-key exclude each other";
    return false;
  }
  if (!tls.enabled() && !tls.plaintext) {
    *error =
        "no TLS certificate: give --tls-ca, --tls-cert and --tls-key (tools/dfuse-certs makes "
        "them), or --plaintext for a cluster on loopback addresses only";
    return false;
  }
  return true;
}

bool CheckPlaintextAddress(const TlsFiles& tls, const std::string& address, std::string* error) {
  if (tls.enabled() || IsLoopbackAddress(address)) return true;
  *error = "plain text refused on " + address +
           ", which is not a loopback address: give --tls-ca, --tls-cert and --tls-key";
  return false;
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const TlsFiles& tls,
                                                           const std::string& listen,
                                                           std::string* error) {
  if (!tls.enabled()) {
    if (!CheckPlaintextAddress(tls, listen, error)) return nullptr;
    return grpc::InsecureServerCredentials();
  }
  Pems pems;
  if (!ReadAll(tls, &pems, error)) return nullptr;
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = pems.ca;
  options.pem_key_cert_pairs.push_back({pems.key, pems.cert});
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(const TlsFiles& tls,
                                                             std::string* error) {
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  Pems pems;
  if (!ReadAll(tls, &pems, error)) return nullptr;
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = pems.ca;
  options.pem_private_key = pems.key;
  options.pem_cert_chain = pems.cert;
  return grpc::SslCredentials(options);
}

std::string PeerIdentity(const grpc::ServerContext& ctx) {
  const std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (!auth || !auth->IsPeerAuthenticated()) return "";
  for (const grpc::string_ref& name : auth->FindPropertyValues("x509_common_name")) {
    return std::string(name.data(), name.size());
  }
  return "";
}

bool IsLoopbackAddress(const std::string& address) {
  const std::string host = HostOf(address);
  if (host == "localhost") return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

}  // namespace dfuse
