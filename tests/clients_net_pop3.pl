#!/usr/bin/perl
# A Net::POP3 (core Perl) client session for clients_perl_test.py.
#
#   clients_net_pop3.pl HOST PORT USER PASSWORD OUTDIR DELETE
#
# Logs in with USER/PASS, reads CAPA, STAT, LIST, UIDL, writes every message (get) to
# OUTDIR/N and its first two body lines (top) to OUTDIR/N.top, deletes message DELETE
# (0: none), quits, and prints what it saw as one JSON object on stdout. Dies with a message
# (exit non-zero) on any failure.
use strict;
use warnings;
use JSON::PP;
use Net::POP3;

my ($host, $port, $user, $password, $outdir, $delete) = @ARGV;
die "usage: $0 HOST PORT USER PASSWORD OUTDIR DELETE\n" unless defined $delete;

my $pop = Net::POP3->new($host, Port => $port, Timeout => 60)
    or die "connect to $host:$port failed: $@\n";
my $banner = $pop->banner;
my $capa = $pop->capa or die "CAPA failed: " . $pop->message;
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
}), "\n";
