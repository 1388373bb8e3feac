"""docs/openapi.yaml against the real `posthaste serve` admin API.

Shows: the document parses (python3-yaml) and every request example in it fits its schema;
every documented path and method is a route of the server (never 405, never the router's
"no such resource" 404); every method a documented path does not list gets 405 with an Allow
header naming exactly the documented ones; paths the document does not have get 404; the JSON
the server answers on each documented GET (with real data: an account, a tenant, a logged-in
POP3 session, finished check and compaction jobs) and its errors fit the documented schemas; the
documented examples for creating and changing tenants and accounts are accepted by the server.
"""

import http.client
import json
import os
import poplib
import re
import time
import unittest

import yaml

from tests.testing.posthaste_server import PosthasteServer, make_temp_dir

TOKEN = "openapi-admin-token-0123456789"
TIMEOUT_S = 60
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def find_document():
  here = os.path.dirname(os.path.abspath(__file__))
  for candidate in (os.path.join(here, "..", "docs", "openapi.yaml"),
                    os.path.join(os.environ.get("TEST_SRCDIR", ""),
                                 os.environ.get("TEST_WORKSPACE", ""), "docs", "openapi.yaml")):
    if os.path.exists(candidate):
      return candidate
  raise AssertionError("docs/openapi.yaml not found in the runfiles")


class SchemaError(AssertionError):
  pass


class Validator:
  """The subset of OpenAPI 3.0 schemas the document uses: $ref, allOf, oneOf, type, enum,
  pattern, minimum, maximum, maxItems, properties, required, additionalProperties: false."""

  def __init__(self, document):
    self.document = document

  def resolve(self, schema):
    while "$ref" in schema:
      node = self.document
      for part in schema["$ref"].lstrip("#/").split("/"):
        node = node[part]
      schema = node
    return schema

  def known_properties(self, schema):
    schema = self.resolve(schema)
    names = set(schema.get("properties", {}))
    for part in schema.get("allOf", []):
      names |= self.known_properties(part)
    return names

  def validate(self, value, schema, where="$"):
    schema = self.resolve(schema)
    for part in schema.get("allOf", []):
      self.validate(value, part, where)
    if "oneOf" in schema:
      matches = 0
      for part in schema["oneOf"]:
        try:
          self.validate(value, part, where)
          matches += 1
        except SchemaError:
          pass
      if matches != 1:
        raise SchemaError("%s: %r matches %d of oneOf" % (where, value, matches))
    kind = schema.get("type")
    checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
              "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)}
    if kind is not None and not checks[kind](value):
      raise SchemaError("%s: %r is not a %s" % (where, value, kind))
    if "enum" in schema and value not in schema["enum"]:
      raise SchemaError("%s: %r not in %r" % (where, value, schema["enum"]))
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
      raise SchemaError("%s: %r does not match %s" % (where, value, schema["pattern"]))
    if "minimum" in schema and value < schema["minimum"]:
      raise SchemaError("%s: %r < %r" % (where, value, schema["minimum"]))
    if "maximum" in schema and value > schema["maximum"]:
      raise SchemaError("%s: %r > %r" % (where, value, schema["maximum"]))
    if isinstance(value, list):
      if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise SchemaError("%s: more than %d items" % (where, schema["maxItems"]))
      for i, item in enumerate(value):
        self.validate(item, schema.get("items", {}), "%s[%d]" % (where, i))
    if isinstance(value, dict):
      for name in schema.get("required", []):
        if name not in value:
          raise SchemaError("%s: %r is required" % (where, name))
      properties = schema.get("properties", {})
      for name, item in value.items():
        if name in properties:
          self.validate(item, properties[name], "%s.%s" % (where, name))
      if schema.get("additionalProperties") is False:
        unknown = set(value) - self.known_properties(schema)
        if unknown:
          raise SchemaError("%s: undocumented members %s" % (where, sorted(unknown)))


class OpenApiTest(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    with open(find_document()) as f:
      cls.document = yaml.safe_load(f)
    cls.validator = Validator(cls.document)
    token_file = os.path.join(make_temp_dir("token-"), "token")
    with open(token_file, "w") as f:
      f.write(TOKEN + "\n")
    cls.server = PosthasteServer(
        shards=2, extra_args=["--admin_listen=127.0.0.1:0", "--admin_token_file=" + token_file])
    cls.server.add_user("ann@example.test", "pw")
    cls.server.start()
    match = re.search(r"\badmin_api=127\.0\.0\.1:(\d+)", cls.server.stderr_text())
    assert match, cls.server.stderr_text()
    cls.port = int(match.group(1))

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def request(self, method, path, body=None, raw=None):
    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
    try:
      data = raw if raw is not None else (json.dumps(body) if body is not None else None)
      conn.request(method, path, body=data, headers={"Authorization": "Bearer " + TOKEN,
                                                      "Content-Type": "application/json"})
      response = conn.getresponse()
      text = response.read()
      parsed = None
      if text and response.getheader("Content-Type") == "application/json":
        parsed = json.loads(text)
      return response.status, parsed, response
    finally:
      conn.close()

  def operations(self):
    for path, item in self.document["paths"].items():
      for method in METHODS:
        if method.lower() in item:
          yield path, method, item[method.lower()]

  def response_schema(self, path, method, status):
    responses = self.document["paths"][path][method.lower()]["responses"]
    self.assertIn(str(status), responses, "%s %s answered an undocumented %d" %
                  (method, path, status))
    response = self.validator.resolve(responses[str(status)])
    content = response.get("content", {}).get("application/json")
    return content["schema"] if content else None

  def check_answer(self, path, method, status, body):
    schema = self.response_schema(path, method, status)
    if schema is not None:
      self.validator.validate(body, schema, "%s %s %d" % (method, path, status))

  def test_request_examples_fit_their_schemas(self):
    examples = 0
    for path, method, operation in self.operations():
      content = operation.get("requestBody", {}).get("content", {}).get("application/json")
      if content and "example" in content:
        self.validator.validate(content["example"], content["schema"], "%s %s" % (method, path))
        examples += 1
    self.assertGreaterEqual(examples, 7)
    with self.assertRaises(SchemaError):
      self.validator.validate({"domain": "x.test", "nope": 1},
                              {"$ref": "#/components/schemas/TenantCreate"})

  # Targets for each path template: ones whose resource is absent, so that no documented
  # method below changes anything that matters (a DELETE finds nothing to delete).
  ABSENT = {"{address}": "nobody@example.test", "{domain}": "nothing.example", "{id}": "0-999999"}

  def test_routes_are_exactly_the_documented_ones(self):
    for path, item in self.document["paths"].items():
      target = path
      for name, value in self.ABSENT.items():
        target = target.replace(name, value)
      documented = {m for m in METHODS if m.lower() in item}
      self.assertTrue(documented, path)
      for method in METHODS:
        status, body, response = self.request(method, target, raw=b"{}")
        if method in documented:
          self.assertNotEqual(status, 405, (method, path))
          if status == 404:
            self.assertNotEqual(body, {"error": "no such resource"}, (method, path))
          self.check_answer(path, method, status, body)
        else:
          self.assertEqual(status, 405, (method, path, body))
          allow = {m.strip() for m in response.getheader("Allow", "").split(",")}
          self.assertEqual(allow, documented, path)
    for target in ("/api/v1", "/api/v1/other", "/api/v1/store", "/api/v1/store/other",
                   "/api/v1/tenants/example.test/x", "/api/v1/sessions/0-1/x",
                   "/api/v1/accounts/ann@example.test/other", "/api/v2/tenants", "/metrics",
                   "/api/v1/auth", "/api/v1/auth/other"):
      for method in METHODS:
        status, body, _ = self.request(method, target)
        self.assertIn(status, (400, 404), (method, target))
        self.assertIn("error", body)
        if status == 404:
          self.assertEqual(body, {"error": "no such resource"}, (method, target))

  def wait_for_job(self, job):
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
      status, body, _ = self.request("GET", "/api/v1/store/" + job)
      self.check_answer("/api/v1/store/" + job, "GET", status, body)
      if body["state"] in ("done", "failed"):
        return body
      time.sleep(0.05)
    self.fail(job + " did not finish")

  def test_answers_fit_the_documented_schemas(self):
    status, body, _ = self.request("POST", "/api/v1/store/check")
    self.check_answer("/api/v1/store/check", "POST", status, body)
    self.assertEqual(self.wait_for_job("check")["state"], "done")
    status, body, _ = self.request("POST", "/api/v1/store/compaction")
    self.check_answer("/api/v1/store/compaction", "POST", status, body)
    self.assertEqual(self.wait_for_job("compaction")["state"], "done")
    pop = poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)
    pop.user("ann@example.test")
    pop.pass_("pw")
    try:
      for path, target in (("/api/v1/accounts", "/api/v1/accounts"),
                           ("/api/v1/accounts/{address}", "/api/v1/accounts/ann@example.test"),
                           ("/api/v1/tenants", "/api/v1/tenants"),
                           ("/api/v1/tenants/{domain}", "/api/v1/tenants/example.test"),
                           ("/api/v1/sessions", "/api/v1/sessions"),
                           ("/api/v1/sessions", "/api/v1/sessions?tenant=example.test"),
                           ("/api/v1/store/usage", "/api/v1/store/usage"),
                           ("/api/v1/store/check", "/api/v1/store/check"),
                           ("/api/v1/store/compaction", "/api/v1/store/compaction")):
        status, body, _ = self.request("GET", target)
        self.assertEqual(status, 200, (target, body))
        self.check_answer(path, "GET", status, body)
      status, body, _ = self.request("GET", "/api/v1/sessions?user=ann@example.test")
      self.assertEqual(len(body["sessions"]), 1, body)
    finally:
      pop.quit()

  def test_documented_examples_are_accepted(self):
    def example(path, method):
      content = self.document["paths"][path][method.lower()]["requestBody"]["content"]
      return content["application/json"]["example"]

    created = example("/api/v1/tenants", "POST")
    status, body, response = self.request("POST", "/api/v1/tenants", created)
    self.assertEqual(status, 201, body)
    self.check_answer("/api/v1/tenants", "POST", status, body)
    self.assertRegex(response.getheader("ETag"), r'^"\d+"$')
    for name, value in created.items():
      self.assertEqual(body[name], value, name)
    target = "/api/v1/tenants/" + created["domain"]
    status, body, _ = self.request("PATCH", target, example("/api/v1/tenants/{domain}", "PATCH"))
    self.assertEqual(status, 200, body)
    self.check_answer("/api/v1/tenants/{domain}", "PATCH", status, body)
    status, body, _ = self.request("POST", "/api/v1/accounts", example("/api/v1/accounts", "POST"))
    self.assertEqual(status, 201, body)
    self.check_answer("/api/v1/accounts", "POST", status, body)
    status, body, _ = self.request("PATCH", "/api/v1/accounts/new@example.test",
                                   example("/api/v1/accounts/{address}", "PATCH"))
    self.assertEqual(status, 200, body)
    status, body, _ = self.request("POST", "/api/v1/auth/verify",
                                   {"user": "new@example.test", "password": "s3cret pass"})
    self.assertEqual((status, body["result"]), (200, "ok"))
    self.check_answer("/api/v1/auth/verify", "POST", status, body)
    status, body, _ = self.request("DELETE", target)
    self.assertEqual(status, 204, body)


if __name__ == "__main__":
  unittest.main()
