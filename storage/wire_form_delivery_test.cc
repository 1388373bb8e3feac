// Delivery of wire-form input (MessageInput::kWireForm, what the LMTP session hands over) on a
// real store under $TEST_TMPDIR: it stores the same bytes, sizes and header lengths as
// delivering the text it is the normal form of, and input that is not in wire form is refused
// with nothing stored.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "storage/mail_store.h"
#include "storage/message_format.h"
#include "storage/store_error.h"
#include "storage/testing/store_test_base.h"

namespace posthaste::storage {
namespace {

using std::string_literals::operator""s;

DeliverOptions WireForm() {
  DeliverOptions options;
  options.input = MessageInput::kWireForm;
  return options;
}

// Text with many of the bytes normalisation cares about.
std::string RandomText(std::mt19937* rng) {
  static constexpr char kAlphabet[] = {'.', '.', '\r', '\n', '\r', '\n', 'a', ' ', '\0', '\xff'};
  std::uniform_int_distribution<int> length(0, 80);
  std::uniform_int_distribution<int> pick(0, sizeof(kAlphabet) - 1);
  std::string text(static_cast<size_t>(length(*rng)), ' ');
  for (char& c : text) c = kAlphabet[pick(*rng)];
  return text;
}

class WireFormDeliveryTest : public testing::StoreTestBase {
 protected:
  void SetUp() override {
    StoreTestBase::SetUp();
    for (const char* address : {"text@x.org", "wire@x.org"}) {
      ASSERT_TRUE(store_->CreateAccount(address, "x").ok());
    }
  }

  // Delivers each text as text to one account and its normal form as wire form to another, in
  // one batch each, and expects identical mailboxes.
  void ExpectSameMailboxes(const std::vector<std::string>& texts) {
    std::vector<std::string> wire;
    for (const std::string& text : texts) wire.push_back(NormalizeForStorage(text).stored);
    std::vector<DeliveryItem> as_text;
    std::vector<DeliveryItem> as_wire;
    for (size_t i = 0; i < texts.size(); ++i) {
      as_text.push_back({texts[i], {}});
      as_wire.push_back({wire[i], WireForm()});
    }
    auto text_results = store_->DeliverBatch("text@x.org", as_text);
    auto wire_results = store_->DeliverBatch("wire@x.org", as_wire);
    ASSERT_TRUE(text_results.ok()) << text_results.status();
    ASSERT_TRUE(wire_results.ok()) << wire_results.status();
    auto text_box = MustOpen("text@x.org");
    auto wire_box = MustOpen("wire@x.org");
    ASSERT_EQ(text_box->size(), wire_box->size());
    const size_t first = text_box->size() - texts.size();
    for (size_t i = 0; i < texts.size(); ++i) {
      SCOPED_TRACE(::testing::PrintToString(texts[i]));
      EXPECT_EQ((*text_results)[i].pop3_size, (*wire_results)[i].pop3_size);
      EXPECT_EQ((*text_results)[i].stored_bytes, (*wire_results)[i].stored_bytes);
      const size_t index = first + i;
      EXPECT_EQ(*store_->ReadMessageForTest(*wire_box, index),
                *store_->ReadMessageForTest(*text_box, index));
      EXPECT_EQ(wire_box->pop3_size(index), text_box->pop3_size(index));
      EXPECT_EQ(wire_box->Ref(index).length, text_box->Ref(index).length);
      EXPECT_EQ(wire_box->Ref(index).header_length, text_box->Ref(index).header_length);
    }
    EXPECT_EQ(store_->GetMailboxStats("wire@x.org")->octets,
              store_->GetMailboxStats("text@x.org")->octets);
  }

  // After a restart both mailboxes still read the same, and Check() (checksums, CRLF endings,
  // header lengths) finds nothing wrong.
  void ReopenAndCheck() {
    Reopen();
    auto text_box = MustOpen("text@x.org");
    auto wire_box = MustOpen("wire@x.org");
    ASSERT_EQ(text_box->size(), wire_box->size());
    for (size_t i = 0; i < text_box->size(); ++i) {
      EXPECT_EQ(*store_->ReadMessageForTest(*wire_box, i),
                *store_->ReadMessageForTest(*text_box, i));
    }
    auto report = store_->Check();
    ASSERT_TRUE(report.ok()) << report.status();
    for (const std::string& problem : report->problems) ADD_FAILURE() << problem;
  }
};

TEST_F(WireFormDeliveryTest, StoresWhatDeliveringTheTextStores) {
  ExpectSameMailboxes({
      "Subject: plain\r\n\r\nbody\r\n",
      "Subject: bare lf\n\n.starts with dot\n..two dots\n.\nend",
      "Subject: bare cr\r\r.x\ry",
      "Subject: nul and 8bit \xe2\x82\xac\r\n\r\na\0b\xff\r\n"s,
      "Subject: long\r\n\r\n" + std::string(3000, 'L') + "\r\n",
      "No-Body: true\r\n",
      "",
  });
  ReopenAndCheck();
}

TEST_F(WireFormDeliveryTest, StoresWhatDeliveringTheTextStoresForRandomTexts) {
  std::mt19937 rng(20240214);
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<std::string> texts;
    for (int i = 0; i < 100; ++i) texts.push_back(RandomText(&rng));
    ExpectSameMailboxes(texts);
  }
  ReopenAndCheck();
}

TEST_F(WireFormDeliveryTest, InputNotInWireFormIsRefusedAndNothingIsStored) {
  for (const std::string bad : {"a\nb\r\n", "a\rb\r\n", ".x\r\n", "x", ""}) {
    SCOPED_TRACE(::testing::PrintToString(bad));
    EXPECT_EQ(ErrorOf(store_->Deliver("wire@x.org", bad, WireForm())), StoreError::kNotWireForm);
  }
  const std::vector<DeliveryItem> batch = {{"ok\r\n", WireForm()}, {"bare\nlf\r\n", WireForm()}};
  const auto delivered = store_->DeliverBatch("wire@x.org", batch);
  EXPECT_EQ(ErrorOf(delivered), StoreError::kNotWireForm);
  EXPECT_EQ(delivered.status().message().substr(0, 14), "message 2 of 2");
  EXPECT_EQ(MustOpen("wire@x.org")->size(), 0u);
  // The same bytes as text are fine: they are normalised.
  MustDeliver("wire@x.org", "bare\nlf\r\n");
}

TEST_F(WireFormDeliveryTest, TheSizeLimitAppliesToThePop3SizeNotTheStuffedSize) {
  ASSERT_TRUE(store_->SetTenantLimits("x.org", {0, 0, 10}).ok());
  // 11 octets stored, 10 in POP3 terms (one stuffing dot): at the limit.
  EXPECT_TRUE(store_->Deliver("wire@x.org", "..abcdefg\r\n", WireForm()).ok());
  EXPECT_EQ(ErrorOf(store_->Deliver("wire@x.org", "..abcdefgh\r\n", WireForm())),
            StoreError::kMessageTooBig);
}

}  // namespace
}  // namespace posthaste::storage
