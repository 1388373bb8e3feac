// The tenant routes of the HTTP admin API (server/admin/admin_api.h lists them): create, list,
// show, change (limits and policy, with the policy's revision as ETag / If-Match) and delete a
// tenant. The policy fields are spelled and checked by server/tenant/policy_fields.h, the table
// the CLI's `tenant policy` uses, so both accept the same values.
//
// Threading: the admin listener's workers, concurrently (the store is thread-safe).
// `tenants_changed` runs after every change that succeeded, before the answer is sent.
#ifndef POSTHASTE_SERVER_ADMIN_ADMIN_TENANTS_H_
#define POSTHASTE_SERVER_ADMIN_ADMIN_TENANTS_H_

#include <functional>
#include <string>

#include "server/admin/admin_reply.h"
#include "storage/mail_store.h"

namespace posthaste::server::admin {

class TenantRoutes {
 public:
  TenantRoutes(storage::MailStore* store, std::function<void()> tenants_changed)
      : store_(store), tenants_changed_(std::move(tenants_changed)) {}

  // Each replies (and returns true). `domain` is lower case (ParseAdminPath).
  bool List(AdminExchange* conn);
  bool Create(AdminExchange* conn);
  bool Show(AdminExchange* conn, const std::string& domain);
  bool Update(AdminExchange* conn, const std::string& domain);
  bool Delete(AdminExchange* conn, const std::string& domain);

 private:
  void Changed() {
    if (tenants_changed_) tenants_changed_();
  }
  // The tenant as JSON, with its ETag (and `extra_headers`: "Name: value\r\n" lines).
  bool ReplyTenant(AdminExchange* conn, int code, std::string_view reason,
                   const std::string& domain, std::string_view extra_headers = "");

  storage::MailStore* const store_;
  const std::function<void()> tenants_changed_;
};

}  // namespace posthaste::server::admin

#endif  // POSTHASTE_SERVER_ADMIN_ADMIN_TENANTS_H_
