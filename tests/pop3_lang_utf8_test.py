"""RFC 6856 with Python's poplib against the real posthaste server.

Shows: CAPA announces "UTF8 USER" and LANG; the LANG listing; LANG de turns the reply texts
German while response codes and the numbers clients parse stay; an unknown language is refused;
a password added as precomposed "pässwörd" logs in when typed decomposed (SASLprep, RFC 4013,
on both `user add` and login) with and without the UTF8 command; after UTF8, a password that is
not UTF-8 gets a clear -ERR; a message with UTF-8 header fields is sent exactly as stored in
both modes (posthaste does not downgrade).
"""

import poplib
import unittest
import unicodedata

from tests.testing.posthaste_server import PosthasteServer, wire_form

PASSWORD = "p\u00e4ssw\u00f6rd"  # precomposed
TIMEOUT_S = 60
UTF8_MESSAGE = ("From: J\u00fcrgen <j\u00fcrgen@example.test>\r\n"
                "Subject: Gr\u00fc\u00dfe aus K\u00f6ln\r\n\r\n"
                "Hallo\r\n").encode("utf-8")


class LangUtf8Test(unittest.TestCase):

  @classmethod
  def setUpClass(cls):
    cls.server = PosthasteServer()
    cls.server.add_user("ann@example.test", PASSWORD)
    cls.uidl = cls.server.deliver("ann@example.test", UTF8_MESSAGE)
    cls.server.start()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()

  def connect(self):
    return poplib.POP3("127.0.0.1", self.server.pop3_port, timeout=TIMEOUT_S)

  def test_capa_announces_utf8_user_and_lang(self):
    pop = self.connect()
    capa = pop.capa()
    self.assertEqual(capa.get("UTF8"), ["USER"])
    self.assertIn("LANG", capa)
    pop.quit()

  def test_lang_listing(self):
    pop = self.connect()
    response, lines, _ = pop._longcmd("LANG")
    self.assertTrue(response.startswith(b"+OK"))
    self.assertEqual(lines, [b"i-default Default language", b"en English", b"de Deutsch"])
    pop.quit()

  def test_german_texts_keep_codes_and_numbers(self):
    pop = self.connect()
    self.assertEqual(pop._shortcmd("LANG de"), b"+OK de Sprache gewechselt")
    pop.user("ann@example.test")
    with self.assertRaises(poplib.error_proto) as caught:
      pop.pass_("wrong")
    self.assertEqual(caught.exception.args[0], b"-ERR [AUTH] Anmeldung fehlgeschlagen")
    pop.quit()

    pop = self.connect()
    self.assertEqual(pop._shortcmd("LANG de-AT"), b"+OK de Sprache gewechselt")
    pop.user("ann@example.test")
    self.assertEqual(pop.pass_(PASSWORD),
                     "+OK Postfach von ann@example.test enth\u00e4lt 1 Nachricht ({} Oktette)"
                     .format(len(wire_form(UTF8_MESSAGE))).encode("utf-8"))
    self.assertEqual(pop.stat(), (1, len(wire_form(UTF8_MESSAGE))))  # parsed: unchanged
    with self.assertRaises(poplib.error_proto) as caught:
      pop.retr(9)
    self.assertEqual(caught.exception.args[0], "-ERR Nachricht existiert nicht".encode("utf-8"))
    self.assertEqual(pop.rset(),
                     "+OK Postfach enth\u00e4lt 1 Nachricht ({} Oktette)"
                     .format(len(wire_form(UTF8_MESSAGE))).encode("utf-8"))
    pop.quit()

  def test_unknown_language_is_refused(self):
    pop = self.connect()
    with self.assertRaises(poplib.error_proto) as caught:
      pop._shortcmd("LANG mul")
    self.assertEqual(caught.exception.args[0], b"-ERR Unsupported language mul")
    with self.assertRaises(poplib.error_proto) as caught:
      pop._shortcmd("LANG d_e")
    self.assertEqual(caught.exception.args[0], b"-ERR Syntax: LANG [language-range]")
    pop.quit()

  def test_decomposed_password_logs_in(self):
    decomposed = unicodedata.normalize("NFD", PASSWORD)
    self.assertNotEqual(decomposed.encode("utf-8"), PASSWORD.encode("utf-8"))
    for send_utf8 in (True, False):
      pop = self.connect()
      if send_utf8:
        self.assertTrue(pop.utf8().startswith(b"+OK"))
      pop.user("ann@example.test")
      self.assertTrue(pop.pass_(decomposed).startswith(b"+OK"), send_utf8)
      pop.quit()

  def test_password_not_utf8_after_utf8_command(self):
    pop = self.connect()
    pop.utf8()
    pop.user("ann@example.test")
    pop.encoding = "latin-1"  # poplib then sends b"caf\xe9"
    with self.assertRaises(poplib.error_proto) as caught:
      pop.pass_("caf\u00e9")
    self.assertEqual(caught.exception.args[0], b"-ERR User name or password is not valid UTF-8")
    pop.quit()

  def test_utf8_headers_are_sent_as_stored_in_both_modes(self):
    for send_utf8 in (True, False):
      pop = self.connect()
      if send_utf8:
        pop.utf8()
      pop.user("ann@example.test")
      pop.pass_(PASSWORD)
      _, lines, _ = pop.retr(1)
      self.assertEqual(b"\r\n".join(lines) + b"\r\n", wire_form(UTF8_MESSAGE), send_utf8)
      pop.quit()


if __name__ == "__main__":
  unittest.main()
