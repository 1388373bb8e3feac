#!/usr/bin/perl
# A Net::POP3 (core Perl) client session for clients_perl_test.py.
#
#   clients_net_pop3.pl HOST PORT USER PASSWORD OUTDIR DELETE [TLS CAFILE]
#
# TLS (IO::Socket::SSL, the chain verified against CAFILE): "starttls" upgrades with STLS
# before logging in, "ssl" connects with implicit TLS (pop3s).
# Logs in with USER/PASS, reads CAPA, STAT, LIST, UIDL, writes every message (get) to
# OUTDIR/N and its first two body lines (top) to OUTDIR/N.top, deletes message DELETE
# (0: none), quits, and prints what it saw as one JSON object on stdout. Dies with a message
# (exit non-zero) on any failure.
use strict;
use warnings;
use JSON::PP;
use Net::POP3;

my ($host, $port, $user, $password, $outdir, $delete, $tls, $cafile) = @ARGV;
die "usage: $0 HOST PORT USER PASSWORD OUTDIR DELETE [starttls|ssl CAFILE]\n"
    unless defined $delete;
$tls //= "";
my @verify = $tls ? (SSL_ca_file => $cafile, SSL_verify_mode => 1) : ();

my $pop = Net::POP3->new($host, Port => $port, Timeout => 60,
                         ($tls eq "ssl" ? (SSL => 1, @verify) : ()))
    or die "connect to $host:$port failed: $@\n";
my $banner = $pop->banner;
my $capa_before_tls = [];
if ($tls eq "starttls") {
  my $plain_capa = $pop->capa or die "CAPA failed: " . $pop->message;
  $capa_before_tls = [sort keys %$plain_capa];
  $pop->starttls(@verify) or die "STLS failed: " . ($pop->message // "") . " $@\n";
}
my $capa = $pop->capa or die "CAPA failed: " . $pop->message;
# (Read while the TLS connection is up: QUIT closes it.)
my $tls_version = $tls ? ($pop->get_sslversion // "") : "";
my $peer_cn = $tls ? ($pop->peer_certificate("cn") // "") : "";
my $count = $pop->login($user, $password);
defined $count or die "login failed: " . $pop->message;
my ($stat_count, $stat_size) = $pop->popstat;
defined $stat_count or die "STAT failed: " . $pop->message;
my $list = $pop->list or die "LIST failed: " . $pop->message;
my $uidl = $pop->uidl or die "UIDL failed: " . $pop->message;

for my $n (sort { $a <=> $b } keys %$list) {
  open(my $fh, '>:raw', "$outdir/$n") or die "open $outdir/$n: $!";
  $pop->get($n, $fh) or die "RETR $n failed: " . $pop->message;
  close($fh) or die "close: $!";
  my $top = $pop->top($n, 2) or die "TOP $n failed: " . $pop->message;
  open(my $th, '>:raw', "$outdir/$n.top") or die "open: $!";
  print $th @$top;
  close($th) or die "close: $!";
}
if ($delete) {
  $pop->delete($delete) or die "DELE $delete failed: " . $pop->message;
}
$pop->quit or die "QUIT failed: " . $pop->message;

print JSON::PP->new->canonical->encode({
  banner => $banner,
  capa => [sort keys %$capa],
  login_count => $count + 0,
  stat => [$stat_count + 0, $stat_size + 0],
  list => {map { $_ => $list->{$_} + 0 } keys %$list},
  uidl => $uidl,
  capa_before_tls => $capa_before_tls,
  tls_version => $tls_version,
  peer_cn => $peer_cn,
}), "\n";
