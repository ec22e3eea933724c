// Fuzzes the lease manager's session handling with what clients on the
// network control: the messages of up to three session streams, in the
// wire format, in any order (a first message that is no Hello, a second
// Hello, acks of revokes never sent, releases of leases never held, modes
// and ranges out of bounds).
//
// An input is a sequence of [stream byte][length byte][ClientMessage
// bytes]. A client id or GFID below 16 is moved into a range of
// its own for this input, so that inputs do not meet each other's sessions
// (the manager runs for the whole process); other values pass unchanged.
//
// After every input the manager must still serve a well-behaved client: a
// Hello is welcomed and an Acquire of a free file granted.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "lease/manager_service.h"
#include "proto/lease.grpc.pb.h"
#include "tests/fuzz/records.h"

namespace dfuse::lease {
namespace {

constexpr size_t kStreams = 3;
constexpr size_t kMaxMessages = 32;

using Stream = grpc::ClientReaderWriter<proto::ClientMessage, proto::ManagerMessage>;

std::unique_ptr<ManagerServer>* server = nullptr;
std::unique_ptr<proto::LeaseManager::Stub>* stub = nullptr;
uint64_t input_number = 0;

void SetUpOnce() {
  spdlog::set_level(spdlog::level::off);  // the manager logs every session
  ManagerOptions options;
  options.term_ms = 500;  // sessions the inputs leave behind expire soon
  options.min_hold_ms = 0;
  std::string error;
  server = new std::unique_ptr<ManagerServer>(ManagerServer::Start(options, &error));
  if (!*server) {
    std::fprintf(stderr, "fuzz_lease_session: %s\n", error.c_str());
    std::abort();
  }
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string((*server)->port()),
                                     grpc::InsecureChannelCredentials());
  stub = new std::unique_ptr<proto::LeaseManager::Stub>(proto::LeaseManager::NewStub(channel));
  // libFuzzer ends with exit(): stop the manager's threads before the
  // static objects they use are destroyed.
  std::atexit([] {
    stub->reset();
    server->reset();
  });
}

// Values below 16 move into this input's own range.
uint64_t Local(uint64_t v) { return v < 16 ? (input_number << 8) + 16 + v : v; }

void Localize(proto::ClientMessage* m) {
  switch (m->msg_case()) {
    case proto::ClientMessage::kHello:
      m->mutable_hello()->set_client_id(Local(m->hello().client_id()));
      for (auto& held : *m->mutable_hello()->mutable_reclaim()) held.set_gfid(Local(held.gfid()));
      break;
    case proto::ClientMessage::kAcquire:
      m->mutable_acquire()->set_gfid(Local(m->acquire().gfid()));
      break;
    case proto::ClientMessage::kRelease:
      m->mutable_release()->set_gfid(Local(m->release().gfid()));
      break;
    case proto::ClientMessage::kRevokeAck:
      m->mutable_revoke_ack()->set_gfid(Local(m->revoke_ack().gfid()));
      break;
    default:
      break;
  }
}

struct Session {
  grpc::ClientContext ctx;
  std::unique_ptr<Stream> stream;
};

// Ends a stream: no more messages, read what the manager still sends, and
// the final status (whatever it is: refusals are expected).
void Finish(Session* s) {
  s->stream->WritesDone();
  proto::ManagerMessage reply;
  while (s->stream->Read(&reply)) {
  }
  s->stream->Finish().ok();
}

// A client that follows the protocol must still be served.
void CheckStillServing() {
  Session s;
  s.ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  s.stream = (*stub)->Session(&s.ctx);
  const uint64_t id = (uint64_t{1} << 62) + input_number;
  proto::ClientMessage hello;
  hello.mutable_hello()->set_client_id(id);
  proto::ClientMessage acquire;
  acquire.mutable_acquire()->set_request_id(1);
  acquire.mutable_acquire()->set_gfid(id);
  acquire.mutable_acquire()->set_mode(proto::LEASE_WRITE);
  proto::ManagerMessage reply;
  bool welcomed = false, granted = false;
  if (s.stream->Write(hello) && s.stream->Write(acquire)) {
    while (!granted && s.stream->Read(&reply)) {
      welcomed |= reply.has_welcome();
      granted = reply.has_grant() && reply.grant().gfid() == id;
    }
  }
  if (!welcomed || !granted) {
    std::fprintf(stderr, "fuzz_lease_session: the manager no longer serves a good client\n");
    std::abort();
  }
  Finish(&s);
}

}  // namespace
}  // namespace dfuse::lease

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  dfuse::lease::SetUpOnce();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dfuse::lease;
  input_number++;
  Session sessions[kStreams];
  dfuse::fuzz::ForEachRecord(data, size, kMaxMessages, [&](uint8_t stream, std::string_view bytes) {
    dfuse::proto::ClientMessage msg;
    if (!msg.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return;
    Localize(&msg);
    Session& s = sessions[stream % kStreams];
    if (!s.stream) {
      s.ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      s.stream = (*stub)->Session(&s.ctx);
    }
    s.stream->Write(msg);  // false once the manager ended the stream
  });
  for (Session& s : sessions) {
    if (s.stream) Finish(&s);
  }
  CheckStillServing();
  return 0;
}
