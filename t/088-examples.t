# examples/: the curl, Node (OpenAI and Anthropic SDKs) and Python (httpx)
# examples, each run against its own `make run` (conf/conductor.conf with the
# embedded mock) on this file's free ports and in a RUNDIR of its own, then
# `make stop`. Each example's output must carry the mock's answers, the
# usage numbers the gateway logged for those very requests, a 401 for a key
# no client has, and what the status report says the client used.
#
# An example whose tools are missing is skipped, saying which (CI installs
# them all: scripts/install-deps.sh).

use strict;
use warnings;

use File::Path ();
use FindBin ();
use IO::Socket::INET;
use JSON::PP ();
use Time::HiRes ();
use lib "$FindBin::Bin/lib";

use Test::Conductor;
use Test::More;

my $env  = harness_env();
my $root = $env->{TEST_NGINX_ROOT};
# this file never starts the harness's nginx or mock: their ports, found
# free for this file, are make run's PORT and MOCK_PORT
my ($port, $mock_port) = @$env{qw(TEST_NGINX_PORT TEST_NGINX_MOCK_PORT)};
my $base = "http://127.0.0.1:$port";
my $out  = "$env->{TEST_NGINX_SERVROOT}/examples";
mkdir $out;

my $module = "$root/build/ngx_http_conductor_module.so";
plan skip_all => "the module is not built ($module): make" unless -f $module;

# from the checkout; a parent make's jobserver is not this make's
my %MAKE_ENV = (MAKEFLAGS => undef, MFLAGS => undef, MAKELEVEL => undef);

sub slurp { open my $fh, '<', $_[0] or return ''; local $/; return scalar <$fh> // '' }

sub alive { my ($pid) = @_; return $pid && kill(0, $pid) && slurp("/proc/$pid/stat") !~ /^\d+ \(.*\) Z/s }

# ---------------------------------------------------------------- make run

my %running;    # master pid => rundir, stopped at the end whatever happens

sub make_vars { my ($rundir) = @_; return ("PORT=$port", "MOCK_PORT=$mock_port", "RUNDIR=$rundir") }

sub make_run {
    my ($rundir) = @_;
    File::Path::remove_tree($rundir);
    my $name = $rundir =~ s{.*/}{}r;
    my ($st, $text) = run_logged(['make', '-s', 'run', make_vars($rundir)], "$out/$name.make-run.log",
        dir => $root, env => \%MAKE_ENV);
    is $st, 0, "make run PORT=$port MOCK_PORT=$mock_port RUNDIR=.../$name"
        or diag $text;
    return undef if $st;
    my $pid;
    wait_for(sub { ($pid) = slurp("$rundir/logs/nginx.pid") =~ /(\d+)/; $pid && port_accepts($port) },
        timeout => 15, what => 'make run to listen');
    $running{$pid} = $rundir if $pid;
    like $text, qr{gateway on \Q$base\E }, 'it says where it listens';
    my $conf = slurp("$rundir/conf/conductor.conf");
    ok $conf =~ /listen 127\.0\.0\.1:$port;/ && $conf =~ /listen 127\.0\.0\.1:$mock_port;/
        && $conf =~ m{url  http://127\.0\.0\.1:$mock_port/v1;} && $conf !~ /127\.0\.0\.1:800[01]\b/,
        'its conductor.conf has the ports asked for, none of the defaults';
    return $pid;
}

sub make_stop {
    my ($pid, $rundir) = @_;
    my $name = $rundir =~ s{.*/}{}r;
    my ($st, $text) = run_logged(['make', '-s', 'stop', make_vars($rundir)], "$out/$name.make-stop.log",
        dir => $root, env => \%MAKE_ENV);
    is $st, 0, 'make stop' or diag $text;
    my $deadline = Time::HiRes::time() + 20;
    Time::HiRes::sleep(0.05) while alive($pid) && Time::HiRes::time() < $deadline;
    ok !alive($pid), 'the nginx of make run is gone after make stop';
    kill_nginx($pid) if alive($pid);
    delete $running{$pid};
    my @bad = grep {/\[alert\]|\[emerg\]|\[crit\]|exited on signal/} split /\n/, slurp("$rundir/logs/error.log");
    is_deeply \@bad, [], 'no alert, emergency or crash in its error.log';
}

sub port_accepts {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $_[0], Proto => 'tcp', Timeout => 1)
        or return 0;
    close $s;
    return 1;
}

# a master by its pid, and its workers (which a killed master leaves behind)
sub kill_nginx {
    my ($master) = @_;
    my @workers = grep { ((split ' ', slurp("/proc/$_/stat") =~ s/^.*\) //sr)[1] // 0) == $master }
        map { m{/proc/(\d+)} } glob '/proc/[0-9]*';
    kill 'KILL', $master, @workers;
}

END {
    for my $pid (keys %running) {
        kill 'QUIT', $pid;
        Time::HiRes::sleep(0.5) if alive($pid);
        kill_nginx($pid) if alive($pid);
    }
}

# ---------------------------------------------------------------- checks

my $HELLO = qr/^Hello from (mock-[\w-]+)! I am the conductor mock provider\.$/;

# the example's "label: value" lines
sub parse_output {
    my ($text) = @_;
    my %line;
    for (split /\n/, $text) {
        $line{$1} = $2 if /^([a-z][a-z ]*?): (.*)$/;
    }
    return \%line;
}

sub numbers { my ($s) = @_; return { ($s // '') =~ /(\w+)=(-?[\d.e+-]+)/g } }

# what the example printed for each request, as the usage log says it:
# "uri upstream_model prompt completion total", sorted
sub printed_records {
    my ($line, $check) = @_;
    my @rec;
    for (['chat', '/v1/chat/completions'], ['stream', '/v1/chat/completions'],
         ['anthropic', '/v1/messages'], ['client key chat', '/auth/v1/chat/completions'],
         ['client key message', '/auth/v1/messages'])
    {
        my ($label, $uri) = @$_;
        my ($model) = ($line->{$label} // '') =~ $HELLO;
        $check->(defined $model, "$label: the mock's answer") or diag "$label: " . ($line->{$label} // '(none)');
        my $u = numbers($line->{"$label usage"});
        my ($in, $outp) = $uri =~ /messages/
            ? ($u->{input_tokens}, $u->{output_tokens})
            : ($u->{prompt_tokens}, $u->{completion_tokens});
        my $total = $uri =~ /messages/ ? ($in // 0) + ($outp // 0) : $u->{total_tokens};
        $check->(($in // 0) > 0 && ($outp // 0) > 0, "$label usage: tokens in and out")
            or diag "$label usage: " . ($line->{"$label usage"} // '(none)');
        push @rec, join ' ', $uri, $model // '?', $in // '?', $outp // '?', $total // '?';
    }
    return [sort @rec];
}

sub logged_records {
    my ($records) = @_;
    return [sort map { join ' ', @$_{qw(uri upstream_model prompt_tokens completion_tokens total_tokens)} }
        grep { $_->{status} eq '200' && $_->{model} ne '' } @$records];
}

sub usage_log {
    my ($rundir) = @_;
    my @r;
    for (split /\n/, slurp("$rundir/logs/usage.log")) {
        my $j = eval { JSON::PP::decode_json($_) } or return undef;
        push @r, $j;
    }
    return \@r;
}

sub check_example {
    my ($name, $argv, %o) = @_;
    my $rundir = "$env->{TEST_NGINX_SERVROOT}-run-$name";
    my $pid = make_run($rundir) or return;

    my ($st, $text) = run_logged($argv, "$out/$name.out", dir => $root,
        env => { CONDUCTOR_BASE_URL => $base });
    is $st, 0, "examples/$o{file} exits 0" or diag $text;
    note $text;
    my $line = parse_output($text);

    my $printed = printed_records($line, \&ok);

    # the requests' records are written in their LOG phase, which may come
    # a moment after the answer reached the example (another worker's)
    my $log;
    wait_for(sub { $log = usage_log($rundir); $log && (grep { $_->{status} eq '200' && $_->{model} ne '' } @$log) >= 5 },
        timeout => 15, what => 'the usage log of the five requests');
    is_deeply $printed, logged_records($log || []),
        'what it printed (answering model, tokens in, out, total, per endpoint) is what the gateway logged';

    is $line->{'wrong key'}, '401 authentication_error', 'a key no client has: 401 authentication_error';
    ok((grep { $_->{status} eq '401' && $_->{uri} eq '/auth/v1/chat/completions' } @{ $log || [] }),
        'the 401 is in the usage log');

    # the client's two requests and their cost (the log's has 6 decimals)
    my $demo = numbers($line->{'client demo'});
    my $cost = 0;
    $cost += $_->{cost_usd} for grep { $_->{uri} =~ m{^/auth/} && $_->{status} eq '200' } @{ $log || [] };
    is $demo->{requests}, 2, 'client demo: its two requests (not the refused key\'s)';
    ok defined $demo->{cost_usd} && $cost > 0 && abs($demo->{cost_usd} - $cost) <= 1e-6 + 1e-12,
        "client demo: cost_usd $demo->{cost_usd} is what the log priced its requests ($cost)"
        or diag "client demo: " . ($line->{'client demo'} // '(none)');
    ok defined $demo->{budget_day_remaining_usd}
        && abs($demo->{budget_day_remaining_usd} - (1 - ($demo->{cost_usd} // 0))) < 1e-9,
        'client demo: the day budget (1.00) less what it spent';

    make_stop($pid, $rundir);
}

sub skip_why {
    my ($name, $why) = @_;
    SKIP: { skip "examples/$name: $why", 1 }
}

# ---------------------------------------------------------------- curl

subtest 'curl' => sub {
    my @missing = grep { system("command -v $_ >/dev/null 2>&1") != 0 } qw(curl jq bash);
    return skip_why('curl', "needs @missing") if @missing;
    check_example('curl', ["$root/examples/curl/conductor.sh"], file => 'curl/conductor.sh');
};

# ---------------------------------------------------------------- node

subtest 'node' => sub {
    my $dir = "$root/examples/node";
    my ($st, $v) = run_logged([qw(node --version)], "$out/node-version.log");
    return skip_why('node', 'node is not installed') if $st;
    my ($major) = $v =~ /^v(\d+)\./;
    return skip_why('node', "node $v: the SDKs need 20 or later") unless $major && $major >= 20;
    unless (-d "$dir/node_modules/openai" && -d "$dir/node_modules/\@anthropic-ai/sdk") {
        ($st) = run_logged([qw(timeout 600 npm ci --no-audit --no-fund --loglevel=error)],
            "$out/npm-ci.log", dir => $dir);
        return skip_why('node', "npm ci failed (no registry?): see $out/npm-ci.log") if $st;
    }
    check_example('node', ['node', "$dir/conductor.mjs"], file => 'node/conductor.mjs');
};

# ---------------------------------------------------------------- python

subtest 'python' => sub {
    # Debian's python3-httpx is in Debian's python3, whatever python3 PATH
    # finds first; the example's #! line says /usr/bin/python3 too
    my $py = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
    my ($st) = run_logged([$py, '-c', 'import httpx'], "$out/httpx.log");
    return skip_why('python', "$py has no httpx (Debian: python3-httpx)") if $st;
    check_example('python', [$py, "$root/examples/python/conductor.py"], file => 'python/conductor.py');
};

done_testing();
