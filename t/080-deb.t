# The Debian package (make deb, debian/): its contents and Depends, lintian,
# then installed into this machine's stock nginx with dpkg -i: the files and
# the modules-enabled link, nginx -t of the system configuration, a routed
# request through /usr/sbin/nginx with a configuration of this test's own
# (the module and snippets as installed), the maintainer scripts' handling of
# the link, then remove and purge leave nothing behind.
#
#   prove -v t/080-deb.t                   builds with `make deb` first
#   TEST_DEB=path.deb prove -v t/080-deb.t   tests that package instead
#
# Needs root and a working dpkg (skipped otherwise), and a machine where the
# package is not installed: the END block purges it, so the machine is left
# as it was found. The system nginx is never started with its own
# configuration, and nothing here listens anywhere but 127.0.0.1.
use lib 't/lib';
use Test::Conductor;
use File::Path ();
use JSON::PP ();

my $PKG  = 'libnginx-mod-http-conductor';
my $SO   = '/usr/lib/nginx/modules/ngx_http_conductor_module.so';
my $AVAIL = '/usr/share/nginx/modules-available/mod-http-conductor.conf';
my $LINK = '/etc/nginx/modules-enabled/50-mod-http-conductor.conf';
my @CONFFILES = map { "/etc/nginx/$_" } qw(conductor_log.conf conductor_proxy.conf pricing.conf);
my $NGINX = '/usr/sbin/nginx';

my $env  = harness_env();
my $root = $env->{TEST_NGINX_ROOT};

plan skip_all => 'needs root: installs the package with dpkg -i' if $> != 0;
plan skip_all => 'dpkg is not usable here'
    if system('dpkg --version >/dev/null 2>&1 && dpkg-deb --version >/dev/null 2>&1') != 0
    || !-w '/var/lib/dpkg';
plan skip_all => "no $NGINX (scripts/install-deps.sh installs nginx)" unless -x $NGINX;

# (run would be Test::Base's)
sub sh { my $out = `@_ 2>&1`; return ($? >> 8, $out) }
sub status_of { my $s = `dpkg-query -W -f='\${Status}' $PKG 2>/dev/null`; return $s }
# installed in any way (not "not-installed", nor unknown to dpkg)
sub present { return status_of() =~ /(?<!not-)installed|config-files|unpacked|half-/ }
# dpkg, again while another apt or dpkg holds its lock
sub dpkg {
    my ($rc, $out);
    for (1 .. 60) {
        ($rc, $out) = sh("dpkg @_");
        last unless $rc && $out =~ /lock/;
        sleep 2;
    }
    return ($rc, $out);
}
sub paths { return map { chomp; $_ } `find @_ 2>/dev/null | sort` }

# built before the machine is taken (below), reported once it is
my ($make_rc, $make_out) = (0, '');
my $deb = $ENV{TEST_DEB};
unless ($deb) {
    ($make_rc, $make_out) = sh("make -s -C $root deb");
    ($deb) = $make_out =~ m{^(\S+\.deb)$}m;
    $deb //= (glob "$root/build/${PKG}_*.deb")[0];
}

# one run at a time on this machine (other checkouts' `make test` run this
# file too): an flock on /etc/nginx itself, so no lock file is left behind
use Fcntl qw(:flock O_RDONLY);
sysopen my $machine_lock, '/etc/nginx', O_RDONLY or die "/etc/nginx: $!\n";
unless (flock $machine_lock, LOCK_EX | LOCK_NB) {
    diag 'another run of t/080-deb.t holds the machine: waiting for it';
    flock $machine_lock, LOCK_EX or die "flock /etc/nginx: $!\n";
}

# what the machine holds before: the test must leave exactly that
my @WATCH = qw(/etc/nginx /usr/lib/nginx /usr/share/nginx/modules-available
               /usr/share/doc/libnginx-mod-http-conductor);
my $OTHERS = '/usr/bin/conductor-* /usr/share/man/man?/conductor-*';    # bin/, man/
my @before = (paths(@WATCH), grep { -e } glob $OTHERS);

plan skip_all => "$PKG is installed here (" . status_of() . "): not touching it"
    if present();
for my $f (@CONFFILES, $SO, $LINK, "$LINK.removed") {
    plan skip_all => "$f exists (make install?): the package would take it over"
        if -e $f || -l $f;
}

is $make_rc, 0, 'make deb' or diag $make_out;
ok $deb && -f $deb, "the package: " . ($deb // 'none') or BAIL_OUT('no .deb to test');

my $prefix = "$env->{TEST_NGINX_SERVROOT}-pkg";
my ($nginx_pid, $ours);

END {
    local $?;    # the test's exit status, not that of the commands here
    kill 'QUIT', $nginx_pid if $nginx_pid && kill 0, $nginx_pid;
    # whatever happened after our install: no trace of the package is left
    dpkg("-P $PKG") if $ours && present();
    File::Path::remove_tree($prefix) if $prefix;
}

# ---------------------------------------------------------------- the .deb

my (undef, $version) = sh("cd $root && debian/module-version");
chomp $version;
my (undef, $arch) = sh('dpkg --print-architecture');
chomp $arch;
my %f;
for my $field (qw(Package Version Architecture Depends)) {
    (undef, $f{$field}) = sh("dpkg-deb -f $deb $field");
    chomp $f{$field};
}
is $f{Package}, $PKG, 'Package';
is $f{Version}, $version, 'Version is the module\'s (NGX_HTTP_CONDUCTOR_VERSION)';
like $deb, qr{/\Q${PKG}_${version}_$arch\E\.deb\z}, 'file name PACKAGE_VERSION_ARCH.deb';

# the exact ABI the distribution's nginx provides, and the module's libraries
my (undef, $provides) = sh(q{dpkg-query -W -f='${Provides}' nginx});
my ($abi) = $provides =~ /(nginx-abi-[\w.+~-]+)/;
ok $abi, "nginx provides an ABI ($provides)";
my @deps = split /\s*,\s*/, $f{Depends};
ok((grep { $_ eq $abi } @deps), "Depends on $abi") or diag "Depends: $f{Depends}";
ok((grep { /^libjansson4\b/ } @deps), 'Depends on libjansson4 (shlibs)');
ok((grep { /^libhiredis[\d.]+\b/ } @deps), 'Depends on libhiredis (shlibs)');

my (undef, $list) = sh("dpkg-deb -c $deb");
my %in_deb = map { m{\s\.(/\S*?)/?$} ? ($1 => 1) : () } split /\n/, $list;
for my $p ($SO, $AVAIL, @CONFFILES, "/usr/share/doc/$PKG/copyright", "/usr/share/doc/$PKG/changelog.gz") {
    ok $in_deb{$p}, "ships $p";
}
ok !$in_deb{$LINK}, 'the modules-enabled link is not shipped (postinst makes it)';
my (undef, $conffiles) = sh("dpkg-deb -I $deb conffiles");
is_deeply [ sort split /\n/, $conffiles ], [ sort @CONFFILES ], 'the snippets are conffiles';

# the scripts of bin/ (whichever the tree holds) in /usr/bin, with their
# interpreter in Depends
my @scripts = grep { -f } glob "$root/bin/*";
for my $s (@scripts) {
    (my $name = $s) =~ s{.*/}{};
    ok $in_deb{"/usr/bin/$name"}, "ships /usr/bin/$name";
    for my $page (glob "$root/man/$name.[1-8]") {
        my ($sect) = $page =~ /\.(\d)\z/;
        ok $in_deb{"/usr/share/man/man$sect/$name.$sect.gz"}, "ships the manual page of $name";
    }
    open my $fh, '<', $s or die "$s: $!";
    my $text = do { local $/; <$fh> };
    if ($text =~ /\A#!.*python3/) {
        ok((grep { /^python3\b(?!-)/ } @deps), "Depends on python3 for $name");
    }
    if ($text =~ /^\s*(?:import|from)\s+yaml\b/m) {
        ok((grep { /^python3-yaml\b/ } @deps), "Depends on python3-yaml for $name");
    }
}

# lintian: no error; the warnings kept are listed (and explained) in the
# README's "Debian package" section
my %kept_warnings = map { $_ => 1 } qw(no-manual-page);
my (undef, $lint) = sh("lintian --no-tag-display-limit $deb");
my @lines = grep { /^[EW]: / } split /\n/, $lint;
is_deeply [ grep { /^E: / } @lines ], [], 'lintian: no error';
is_deeply [ grep { /^W: \S+: (\S+)/ && !$kept_warnings{$1} } @lines ], [],
    'lintian: no warning but the ones README lists';
diag "lintian: $_" for @lines;

# ---------------------------------------------------------------- install

my ($rc, $out) = sh("dpkg-query -L $PKG");
isnt $rc, 0, 'dpkg -L: not installed before';

my $pid_file_before = -e '/run/nginx.pid';
$ours = 1;
($rc, $out) = dpkg("-i $deb");
is $rc, 0, 'dpkg -i' or diag $out;
like status_of(), qr/install ok installed/, 'installed';

(undef, my $listed) = sh("dpkg-query -L $PKG");
my %listed = map { $_ => 1 } split /\n/, $listed;
for my $p ($SO, $AVAIL, @CONFFILES) {
    ok $listed{$p} && -f $p, "dpkg -L lists $p and it is there";
}
for my $s (@scripts) {
    (my $name = $s) =~ s{.*/}{};
    ok $listed{"/usr/bin/$name"} && -x "/usr/bin/$name", "/usr/bin/$name installed, executable";
}
is readlink($LINK), $AVAIL, "$LINK -> $AVAIL (postinst)";
open my $fh, '<', $AVAIL or die "$AVAIL: $!";
like do { local $/; <$fh> }, qr{^load_module \Q$SO\E;$}m, 'modules-available: the load_module line';
(undef, $out) = sh("dpkg --verify $PKG");
is $out, '', 'dpkg --verify: files as shipped';
is -e '/run/nginx.pid' ? 1 : 0, $pid_file_before ? 1 : 0, 'the maintainer scripts started no nginx';

# the system configuration loads it and passes
($rc, $out) = sh("$NGINX -t");
is $rc, 0, 'nginx -t (the system configuration)' or diag $out;
(undef, $out) = sh("$NGINX -T");
like $out, qr{^load_module \Q$SO\E;}m, 'nginx -T: the system configuration loads the module';

# ---------------------------------------------------------------- serve

my ($gw, $mock) = ($env->{TEST_NGINX_PORT}, $env->{TEST_NGINX_MOCK_PORT});
File::Path::remove_tree($prefix);
File::Path::make_path("$prefix/conf", "$prefix/logs");
my ($user, $gid) = (getpwuid $<)[0, 3];
my $group = getgrgid $gid;
open my $conf, '>', "$prefix/conf/nginx.conf" or die $!;
print $conf <<"CONF";
# the module and snippets as the package installed them
include /etc/nginx/modules-enabled/*.conf;

daemon on;
master_process on;
worker_processes 1;
user $user $group;
error_log logs/error.log notice;
pid logs/nginx.pid;

events {
    worker_connections 64;
}

http {
    include /etc/nginx/conductor_log.conf;
    access_log logs/usage.log conductor_json;
    client_body_temp_path $prefix/client_body_temp;
    proxy_temp_path $prefix/proxy_temp;
    fastcgi_temp_path $prefix/fastcgi_temp;
    uwsgi_temp_path $prefix/uwsgi_temp;
    scgi_temp_path $prefix/scgi_temp;

    conductor_zone conductor:4m;

    conductor_provider mock {
        url  http://127.0.0.1:$mock/v1;
        key  demo-1 demo-key-1;
        include /etc/nginx/pricing.conf;
    }

    conductor_model fast {
        mock gpt-4o-mini;
    }

    upstream conductor_backend {
        conductor_balancer;
    }

    server {
        listen 127.0.0.1:$gw;

        location /v1/ {
            conductor_route;
            include /etc/nginx/conductor_proxy.conf;
        }

        location = /conductor/status {
            conductor_status;
        }
    }

    server {
        listen 127.0.0.1:$mock;
        access_log off;

        location / {
            conductor_mock;
        }
    }
}
CONF
close $conf;

($rc, $out) = sh("$NGINX -p $prefix/ -c $prefix/conf/nginx.conf");
is $rc, 0, "$NGINX with the test configuration starts" or diag $out;
wait_for(sub { open my $p, '<', "$prefix/logs/nginx.pid" or return 0; ($nginx_pid) = <$p> =~ /(\d+)/;
               return $nginx_pid && IO::Socket::INET->new(PeerAddr => "127.0.0.1:$gw") },
         timeout => 10, what => 'the packaged module\'s nginx to listen');

my $r = http_request(POST => '/v1/chat/completions', {},
    '{"model":"fast","messages":[{"role":"user","content":"hi"}]}', port => $gw);
is $r->{status}, 200, 'a routed request through the system nginx';
like $r->{json}{choices}[0]{message}{content} // '', qr/^Hello from gpt-4o-mini/,
    'the mock\'s answer, for the provider model';

# counted in the LOG phase, which can come after the answer (see t/007)
my $st = status_wait(sub { ($_->{totals}{requests} // 0) >= 1 }, port => $gw, timeout => 15);
is $st->{totals}{requests}, 1, 'status: the request';
cmp_ok $st->{totals}{tokens}{prompt} // 0, '>', 0, 'status: its prompt tokens';
cmp_ok $st->{totals}{tokens}{completion} // 0, '>', 0, 'status: its completion tokens';
cmp_ok $st->{totals}{cost_usd} // 0, '>', 0, 'status: priced by the installed pricing.conf';
my @records;
wait_for(sub {
    open my $log, '<', "$prefix/logs/usage.log" or return 0;
    @records = map { JSON::PP::decode_json($_) } <$log>;
    return @records >= 1;
}, timeout => 15, what => 'the usage log record');
is $records[0]{model} // '', 'fast', 'the installed conductor_log.conf\'s JSON record';

if ($nginx_pid) {
    kill 'QUIT', $nginx_pid;
    wait_for(sub { !kill 0, $nginx_pid }, timeout => 20, what => 'nginx to stop');
}
ok $nginx_pid && !kill(0, $nginx_pid), 'stopped by its pid';
undef $nginx_pid;

# ---------------------------------------------------------------- the link

# an admin who disabled the module keeps it disabled over a reinstall
unlink $LINK;
($rc, $out) = dpkg("-i $deb");
is $rc, 0, 'reinstall' or diag $out;
ok !-l $LINK, 'a reinstall does not re-enable a module the admin disabled';
symlink $AVAIL, $LINK or die "$LINK: $!";

# remove: out of the configuration; the name it leaves aside brings it back
# on the next install (Debian's modules do the same)
($rc, $out) = dpkg("-r $PKG");
is $rc, 0, 'dpkg -r' or diag $out;
like status_of(), qr/deinstall ok config-files/, 'removed, its conffiles kept';
ok !-e $SO, 'remove: the .so is gone';
ok !-e $AVAIL, 'remove: the modules-available file is gone';
ok !-e $LINK && !-l $LINK, 'remove: the modules-enabled link is gone';
ok -f $_, "remove keeps the conffile $_" for @CONFFILES;
($rc, $out) = sh("$NGINX -t");
is $rc, 0, 'nginx -t after remove' or diag $out;

($rc, $out) = dpkg("-i $deb");
is $rc, 0, 'install after remove' or diag $out;
is readlink($LINK), $AVAIL, 'an install after a remove enables it again';
($rc, $out) = dpkg("-r $PKG");
is $rc, 0, 'dpkg -r again' or diag $out;

# ---------------------------------------------------------------- purge

($rc, $out) = dpkg("-P $PKG");
is $rc, 0, 'dpkg -P' or diag $out;
ok !present(), 'purged: dpkg has no trace of it' or diag status_of();
($rc, $out) = sh("dpkg-query -L $PKG");
isnt $rc, 0, 'dpkg -L: not installed after';
ok !-e $_ && !-l $_, "purge: no $_" for $SO, $AVAIL, $LINK, "$LINK.removed", @CONFFILES;
my @after = (paths(@WATCH), grep { -e } glob $OTHERS);
my %was = map { $_ => 1 } @before;
my %now = map { $_ => 1 } @after;
is_deeply [ grep { !$was{$_} } @after ], [], 'find: nothing left behind';
is_deeply [ grep { !$now{$_} } @before ], [], 'find: nothing of the machine taken away';

done_testing();
