// The hand-over of a delivered message from the LMTP session to storage, for the differential
// test and fuzzer that keep it byte-exact (lmtp_wire_form_test.cc, lmtp_wire_form_fuzzer.cc).
//
// RunLmtpHandover() takes message bytes as an MTA would send them after DATA, feeds them with
// the terminator to a real LmtpSession in pieces, and returns the message the session asked
// to deliver together with the reference for the path it replaced: DATA's framing as
// docs/ARCHITECTURE.md ("Line framing") states it, written out plainly (the CRLF lines, one
// leading dot removed from each, bare LFs turned into CRLF, bare CRs kept, Return-Path first),
// which is what the session handed storage to normalise (NormalizeForStorage) until it handed
// over wire form. The reference was checked equal to that session (the commit that added it).
//
// Test-only. Threading: none shared; call from any one thread.
#ifndef POSTHASTE_TESTS_LMTP_HANDOVER_H_
#define POSTHASTE_TESTS_LMTP_HANDOVER_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace posthaste::tests {

struct LmtpHandover {
  // The reference: the message unstuffed, bare CRs still in it (the old path's input to
  // storage).
  std::string unstuffed;
  // What the session's kDeliver action carried.
  std::string delivered;
  // The session delivered exactly once (a reference or session bug otherwise).
  bool delivered_once = false;
};

// `data` is the bytes after "354", without the terminator (the harness appends "\r\n.\r\n";
// an earlier terminator inside `data` ends the message there, as it would on the wire).
// `seed` picks the piece sizes and whether the session adds Return-Path.
LmtpHandover RunLmtpHandover(std::string_view data, uint32_t seed);

// The reference alone: `content` is the DATA bytes before the terminator's ".\r\n" (ending in
// CRLF, or empty).
std::string UnstuffedReference(std::string_view content);

}  // namespace posthaste::tests

#endif  // POSTHASTE_TESTS_LMTP_HANDOVER_H_
