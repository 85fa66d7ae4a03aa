# bin/conductor-top, the terminal dashboard, under tmux against a real nginx
# with the embedded mock provider and conductor_auth on the status: the
# screen shows every key with its count, the totals the answers add up to,
# the models and clients; arrow keys and PgUp/PgDn scroll, Tab and 1-4
# switch views, q ends the process; a 40x10 and a 20x5 terminal do not end
# it; nginx stopped shows "unreachable, retrying" and started again is
# back; no key, or a key that is not an admin's, says so; no client key is
# ever on the screen.  The recent calls (every call of the test with its
# tokens and cost) and the history's sparkline are checked on the real
# gateway when its JSON has "recent" (?recent=N), and always on a fixed
# document of the spec (t/data/top-status.json, a file: URL) with --once.
use lib 't/lib';
use Test::Conductor;
use Encode ();
use File::Temp ();
use IO::Socket::INET ();
use JSON::PP ();
use Time::HiRes ();

# a test whose output pipe closes (| head) still ends its tmux and nginx
# in END (the harness's too): once, and quietly after that
$SIG{PIPE} = sub { $SIG{PIPE} = 'IGNORE'; exit 1 };

my $env  = harness_env();
my $port = $env->{TEST_NGINX_PORT};
my $root = $env->{TEST_NGINX_ROOT};
my $TOP  = "$root/bin/conductor-top";
my $URL  = "http://127.0.0.1:$port/conductor/status";

my $ADMIN_KEY = 'sk-top-admin-7f3a9c1e5b-dashboard';
my $TEAM_KEY  = 'sk-top-team-22c4e8a0d6-notadmin';
my $PROVIDER_SECRET = 'mock-provider-secret-top-1234';
my @SECRETS = ($ADMIN_KEY, $TEAM_KEY, $PROVIDER_SECRET);
my $AUTH = { Authorization => "Bearer $ADMIN_KEY" };

if (!-x '/usr/bin/tmux') {
    Test::More::plan(skip_all => 'tmux is not installed (scripts/install-deps.sh)');
}

# 24 keys on one provider: the keys view is longer than a 40-line screen
my $NKEYS = 24;
my $keys = join "\n", map { sprintf '        key k%02d %s-%02d rpm=1000 tpm=1000000;', $_, $PROVIDER_SECRET, $_ }
    1 .. $NKEYS;

my %NGINX = (
    http_config => <<"HTTP",
    conductor_zone conductor:2m;
    conductor_provider mock {
        url http://127.0.0.1:$port/mock/v1;
$keys
        price m-small input=1 output=2;
    }
    conductor_provider solo {
        url http://127.0.0.1:$port/mock/v1;
        key s1 $PROVIDER_SECRET-solo rpm=50 tpm=40000 max_inflight=4;
        price m-big input=3 output=5;
    }
    conductor_model fast { mock m-small; }
    conductor_model smart { solo m-big; }
    conductor_model other { mock m-small; }
    conductor_client ops {
        key $ADMIN_KEY;
        admin on;
    }
    conductor_client team {
        key $TEAM_KEY;
        models fast smart;
        limit rpm=100 max_inflight=8;
        budget 5 per=day;
    }
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<"SERVER",
    location /v1/ {
        conductor_auth on;
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location /mock/ {
        conductor_auth off;
        conductor_mock;
    }
    location = /conductor/status {
        conductor_auth on;
        conductor_status;
    }
SERVER
);

start_nginx(%NGINX);

# ---------------------------------------------------------------- traffic

my %PRICE = ('fast' => [1, 2], 'smart' => [3, 5]);    # USD per 1M tokens
my ($n, $tokens, $prompt, $completion, $micro) = (0, 0, 0, 0, 0);
my %per_model;
my @sent;    # the calls, oldest first

# USD as the dashboard writes it ($micro in millionths)
sub usd {
    my ($micro) = @_;
    return $micro == 0 ? '$0' : $micro < 1000 ? sprintf('$%.6f', $micro / 1e6) : sprintf('$%.4f', $micro / 1e6);
}
for my $model (qw(fast fast smart fast smart fast smart fast)) {
    my $r = http_request(POST => '/v1/chat/completions', { Authorization => "Bearer $TEAM_KEY" },
        qq{{"model":"$model","messages":[{"role":"user","content":"hello from the dashboard test"}]}});
    is $r->{status}, 200, "$model through the gateway" or diag $r->{body};
    my $u = $r->{json}{usage} || {};
    $n++;
    $per_model{$model}++;
    $prompt     += $u->{prompt_tokens};
    $completion += $u->{completion_tokens};
    $tokens     += $u->{total_tokens};
    my $m = $u->{prompt_tokens} * $PRICE{$model}[0] + $u->{completion_tokens} * $PRICE{$model}[1];
    $micro      += $m;
    push @sent, { model => $model, tokens => "$u->{prompt_tokens}/$u->{completion_tokens}", cost => usd($m) };
}
# and one the gateway refuses: a model the client may not use
my $refused = http_request(POST => '/v1/chat/completions', { Authorization => "Bearer $TEAM_KEY" },
    '{"model":"other","messages":[{"role":"user","content":"not for team"}]}');
is $refused->{status}, 403, 'a model outside the client\'s models: 403';
my $ok = $n;
$n++;

# a count as the tables write it: 999, 1.2k, 12k
sub compact {
    my ($v) = @_;
    return $v < 1000 ? $v : $v < 9950 ? sprintf('%.1fk', $v / 1000) : sprintf('%dk', $v / 1000 + 0.5);
}

my $cost = usd($micro);

my $status = status_report(headers => $AUTH);
ok $status, 'the status JSON with the admin key' or BAIL_OUT('no status');
is $status->{totals}{requests}, $n, "the JSON counts $n requests";
my $HAS_RECENT = do {
    my $r = status_report(headers => $AUTH, path => '/conductor/status?recent=5');
    $r && ref $r->{recent} eq 'ARRAY';
};
diag $HAS_RECENT ? 'the gateway serves ?recent=: its calls are checked on screen'
                 : 'the gateway has no ?recent= yet: recent calls checked on t/data/top-status.json only';

# the expected count of every key, from the JSON
my %count;
for my $p (@{ $status->{providers} }) {
    $count{"$p->{name}/$_->{name}"} = $_->{requests} for @{ $p->{keys} };
}
is $count{'solo/s1'}, $per_model{smart}, 'solo/s1 served every smart request';

# ---------------------------------------------------------------- --once

sub top_once {
    my (%o) = @_;
    # the key through the environment, out of the process list
    local $ENV{LANG} = 'C.UTF-8';
    local $ENV{CONDUCTOR_KEY} = $o{key} // '';
    my $cmd = join ' ', map({ quotemeta } $TOP, '--once', @{ $o{args} || [] }), '2>&1';
    my $out = `$cmd`;
    return (Encode::decode('UTF-8', $out), $? >> 8);
}

{
    my ($out, $rc) = top_once(key => $ADMIN_KEY, args => ['--width', 120, $URL]);
    is $rc, 0, '--once: exit 0 when the gateway answers';
    like $out, qr/^requests \Q$n\E\s+ok \Q$ok\E\s+errors 1 \(4xx 1\)\s+tokens \Q$tokens\E \(in \Q$prompt\E, out \Q$completion\E\)\s+cost \Q$cost\E/m,
        "--once: the totals ($n requests, $ok answered, a 4xx, $tokens tokens, $cost)";
    my @missing = grep {
        my ($prov, $key) = split m{/}, $_;
        $out !~ m{^\s+\Q$prov/$key\E\s+ok\s+\Q$count{$_}\E\s}m
    } sort keys %count;
    is_deeply \@missing, [], '--once: every key with its count (' . scalar(keys %count) . ' keys)';
    like $out, qr{^\s+rpm \S+ \d+/50\b.*tpm \S+ \d+/40k\b.*inflight \S+ 0/4}m, '--once: the limit bars of solo/s1';
    like $out, qr/^fast\s+\Q$per_model{fast}\E\s/m,  '--once: model fast';
    like $out, qr/^smart\s+\Q$per_model{smart}\E\s/m, '--once: model smart';
    like $out, qr/^team\s+\Q$n\E\s/m, '--once: client team';
    like $out, qr/^ops \(admin\)\s+\d+\s/m, '--once: client ops, an admin';
    like $out, qr/budget\/day \S+ \$\S+\/\$5\.00 resets in/, '--once: the budget bar of team';
    unlike $out, qr/\Q$_\E/, '--once: no secret in the output' for @SECRETS;

    # what the gateway answers without a key and with one that is not an admin's
    ($out, $rc) = top_once(args => [$URL]);
    is $rc, 1, '--once without a key: exit 1';
    like $out, qr/401 Unauthorized: the status wants an admin client key: pass --key or set CONDUCTOR_KEY/,
        '--once without a key: says a key is needed';
    ($out, $rc) = top_once(key => $TEAM_KEY, args => [$URL]);
    is $rc, 1, '--once with a non-admin key: exit 1';
    like $out, qr/403 Forbidden: the client key is not an admin client/, '--once with a non-admin key: says so';
    unlike $out, qr/\Q$TEAM_KEY\E/, '--once: the non-admin key is not printed';
    ($out, $rc) = top_once(args => ['--key', $TEAM_KEY, $URL]);
    like $out, qr/403 Forbidden/, '--key works as CONDUCTOR_KEY does';
    unlike $out, qr/\Q$TEAM_KEY\E/, '--key: not printed';

    # the gateway's JSON with "recent" and "history" as the spec has them
    ($out, $rc) = top_once(args => ['--width', 120, "file://$root/t/data/top-status.json"]);
    is $rc, 0, '--once on the spec document: exit 0';
    like $out, qr/^\d\d:\d\d:\d\d\.500 team-a\s+fast\s+mock-openai\/demo-1\s+200\s+1\s+15\/9\s+\$0\.000123\s+12ms\s+340ms chat$/m,
        'a recent call: time, client, model, provider/key, status, attempts, tokens, cost, ttfb, duration';
    like $out, qr/^\d\d:\d\d:\d\d\.750 team-a\s+smart\s+mock-backup\/backup-1\s+200\s+2\s+~1\.5k\/2\.3k\s+-\s+250ms\s+2\.4s chat sse$/m,
        'an estimated, unpriced stream after two attempts';
    like $out, qr/^\d\d:\d\d:\d\d\.000 -\s+-\s+-\s+401\s+0\s+0\/0\s+-\s+-\s+0ms$/m, 'a 401 with no client, model nor key';
    like $out, qr/^\d\d:\d\d:\d\d\.000 ops\s+claude\s+mock-anthropic\/demo-a\s+503\s+3\s+20\/0\s+\$0\.000060\s+-\s+1m01s messages$/m,
        'a 503 after three attempts, a minute long';
    my @order = $out =~ /^\d\d:\d\d:\d\d\.(\d{3}) /mg;
    is_deeply \@order, [qw(500 750 000 000)], 'the recent calls newest first, as the JSON has them';
    like $out, qr/^req\/min \x{b7}\x{2584}\x{2588}\x{2583}\x{2587}\x{2582}\x{2586}\x{b7}\x{2584}\x{2588}\x{2583}\x{2587}\x{2582}\x{2586}\x{b7} 42 \(last 15m, now 0\)/m,
        'the requests per minute of the history as a sparkline (0 is a dot, the top a full block)';
    like $out, qr{mock-openai/demo-1\s+cool 12s\s+1\s+2/8\s}, 'a key in cooldown, with its in-flight and max';
    like $out, qr{mock-openai/demo-2\s+disabled\s}, 'a disabled key';
    like $out, qr/^redis ready  2\/2 workers ready  last sync 55ms ago/m, 'the Redis state';

    # a gateway that answers 400 to a history= it does not take is asked
    # again without it
    my $bad = http_request(GET => '/conductor/status?history=bogus', $AUTH);
    ($out, $rc) = top_once(key => $ADMIN_KEY, args => ['--history', 'bogus', $URL]);
    is $rc, 0, '--history bogus: a document all the same (the gateway answers '
        . $bad->{status} . ' to ?history=bogus)';
    like $out, qr/^requests \Q$n\E /m, '--history bogus: the totals';
}

# ---------------------------------------------------------------- tmux

my $SOCK = "conductor-top-test-$$";
my $tmux_conf = File::Temp->new(SUFFIX => '.conf');
print $tmux_conf "set -g status off\nset -g remain-on-exit on\nset -g history-limit 0\n";
close $tmux_conf;

sub tmux {
    my @cmd = ('tmux', '-u', '-L', $SOCK, '-f', $tmux_conf->filename, @_);
    my $pid = open my $fh, '-|';
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        exec { $cmd[0] } @cmd;
        exit 127;
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return Encode::decode('UTF-8', $out);
}

my $SOCK_PATH;    # tmux leaves its socket file behind
sub tmux_end {
    return unless $SOCK;
    system 'tmux', '-L', $SOCK, 'kill-server';
    unlink $SOCK_PATH if $SOCK_PATH;
    undef $SOCK;
}
END { tmux_end() }

# a dashboard in a window of its own; %o: key, args, name
my $TMUX_UP = 0;
sub top_window {
    my (%o) = @_;
    # the key, out of tmux's command line: the first dashboard has it in
    # the environment the tmux server starts with (CONDUCTOR_KEY), the
    # others in a 0600 file (--key-file) or not at all
    my @e = ('-e', 'LANG=C.UTF-8');
    my @key;
    if (!$TMUX_UP) {
        $ENV{CONDUCTOR_KEY} = $o{key} // '';
    }
    else {
        push @e, '-e', 'CONDUCTOR_KEY=';
        if (defined $o{key}) {
            my $file = "$env->{TEST_NGINX_SERVROOT}/top-$o{name}.key";
            my $old = umask 077;
            open my $fh, '>', $file or die "$file: $!";
            print $fh "$o{key}\n";
            close $fh;
            umask $old;
            @key = ('--key-file', $file);
        }
    }
    # its exit status in a file: tmux may not have reaped it when the pane
    # is seen dead
    my $rc = "$env->{TEST_NGINX_SERVROOT}/top-$o{name}.rc";
    unlink $rc;
    tmux($TMUX_UP++ ? ('new-window', '-d', '-t', 'top') : ('new-session', '-d', '-x', 120, '-y', 40, '-s', 'top'),
        '-n', $o{name}, @e, 'sh', '-c', '"$@"; echo $? > ' . $rc, 'sh',
        $TOP, '--interval', '0.5', @key, @{ $o{args} || [] }, $o{url} // $URL);
    delete $ENV{CONDUCTOR_KEY};
    $SOCK_PATH //= do { my $p = tmux('display-message', '-p', '#{socket_path}'); chomp $p; $p };
    return "top:$o{name}";
}

sub screen {
    my ($t) = @_;
    return tmux('capture-pane', '-p', '-t', $t);
}

my @screens;    # every screen seen, for the secret check
sub screen_until {
    my ($t, $re, $what) = @_;
    my $s = '';
    wait_for(sub { $s = screen($t); push @screens, $s; $s =~ $re }, timeout => 10, interval => 0.1,
        what => $what);
    return $s;
}

sub pane {
    my ($t, $fmt) = @_;
    my $v = tmux('display-message', '-p', '-t', $t, $fmt);
    chomp $v;
    return $v;
}

sub press {
    my ($t, @k) = @_;
    tmux('send-keys', '-t', $t, @k);
}

my $w = top_window(key => $ADMIN_KEY, name => 'main');
my $s = screen_until($w, qr/^requests \Q$n\E /m, 'the dashboard to show the totals');
like $s, qr/^conductor-top  \Q$URL\E  nginx \S+ module \S+\s+gateway \d\d:\d\d:\d\d/, 'the title: URL, versions, the gateway clock';
like $s, qr/^requests \Q$n\E\s+ok \Q$ok\E\s+errors 1 \(4xx 1\)\s+tokens \Q$tokens\E \(in \Q$prompt\E, out \Q$completion\E\)\s+cost \Q$cost\E/m,
    "the screen's totals: $n requests, $ok answered, a 4xx, $tokens tokens, $cost";
like $s, qr/^\[1 Keys\]  2 Models   3 Clients   4 Recent /m, 'the keys view first';
like $s, qr/^PROVIDER\/KEY\s+STATE\s+REQ\s+INFL\s+ERR\s+429\s+TOKENS\s+COST\s+TTFB/m, 'the keys table header';
like $s, qr/^mock  openai  req \d+/m, 'the provider mock';
my @rows = $s =~ m{^\s+(mock/k\d\d)\s+ok\s+(\d+)\s}mg;
ok @rows >= 8, 'several keys of mock on the first screen (' . @rows / 2 . ')';
my %shown = @rows;
is_deeply [ map { $shown{$_} == $count{$_} ? () : "$_: $shown{$_} != $count{$_}" } sort keys %shown ], [],
    'each key with its count';
unlike $s, qr{solo/s1}, 'solo/s1 is below the screen';
like $s, qr/^lines 1-\d+ of \d+  \(more below\)\s*$/m, 'the footer says there is more below';
my @lines = split /\n/, $s;
ok @lines <= 40 && !grep({ length > 120 } @lines), 'the screen fits 120x40';

# scrolling
press($w, 'End');
$s = screen_until($w, qr{solo/s1}, 'End to show the last key');
like $s, qr{^\s+solo/s1\s+ok\s+\Q$count{'solo/s1'}\E\s+0/4\s}m, 'End: solo/s1 with its count and in-flight of max';
unlike $s, qr{mock/k01\s}, 'End: k01 scrolled away';
my ($total) = $s =~ /^lines \d+-\d+ of (\d+)/m;
like $s, qr/^lines \d+-(\d+) of \1\s*$/m, 'End: the footer ends at the last line';
press($w, 'Home');
$s = screen_until($w, qr/^lines 1-/m, 'Home');
my @body = split /\n/, $s;
my ($hdr) = grep { $body[$_] =~ /^PROVIDER\/KEY/ } 0 .. $#body;
like $body[ $hdr + 1 ], qr/^mock  openai/, 'Home: the provider line first';
press($w, 'Down', 'Down', 'Down');
$s = screen_until($w, qr/^lines 4-/m, 'three Down keys');
@body = split /\n/, $s;
like $body[ $hdr + 1 ], qr{^\s+mock/k02\s}, 'Down x3: the first line is k02 (provider, k01 and its bars gone)';
press($w, 'Up');
$s = screen_until($w, qr/^lines 3-/m, 'Up');
@body = split /\n/, $s;
like $body[ $hdr + 1 ], qr{^\s+rpm }, 'Up: the bars of k01 back on top';
my ($from, $to) = $s =~ /^lines (\d+)-(\d+)/m;
press($w, 'NPage');
my $page = $to - $from + 1;
my $next = $from + $page;
$next = $total - $page + 1 if $next > $total - $page + 1;    # not past the end
$s = screen_until($w, qr/^lines \Q$next\E-/m, 'PgDn');
like $s, qr/^lines \Q$next\E-\Q@{[ $next + $page - 1 ]}\E of \Q$total\E/m, "PgDn: a page ($page lines) further";
press($w, 'PPage');
my $prev = $next - $page < 1 ? 1 : $next - $page;
$s = screen_until($w, qr/^lines \Q$prev\E-/m, 'PgUp');
like $s, qr/^lines \Q$prev\E-/m, 'PgUp: a page back';

# views
press($w, 'Tab');
$s = screen_until($w, qr/^ 1 Keys  \[2 Models\]/m, 'Tab to the models');
like $s, qr/^MODEL\s+REQ\s+OK\s+ERR\s+IN\s+OUT\s+TOKENS\s+COST/m, 'Tab: the models table';
like $s, qr/^fast\s+\Q$per_model{fast}\E\s+\Q$per_model{fast}\E\s+0\s/m, 'the model fast with its requests';
like $s, qr/^smart\s+\Q$per_model{smart}\E\s+\Q$per_model{smart}\E\s+0\s/m, 'the model smart with its requests';
like $s, qr{^\s+solo/m-big\s*$}m, 'the target of smart';
press($w, 'Tab');
$s = screen_until($w, qr/\[3 Clients\]/, 'Tab to the clients');
like $s, qr/^CLIENT\s+REQ\s+INFL\s+ERR\s+429\s+TOKENS\s+COST/m, 'the clients table';
my ($team) = grep { $_->{name} eq 'team' } @{ $status->{clients} };
my $team_errors = 0;
$team_errors += $_ for values %{ $team->{errors} };
is $team_errors, 1, 'the JSON: one error of team (its 403)';
like $s, qr/^team\s+\Q$n\E\s+0\/8\s+1\s+0\s+\Q@{[ compact($tokens) ]}\E\s+\Q$cost\E/m,
    'the client team: requests, in flight of max, errors, 429s, tokens, cost';
like $s, qr/rpm \S+ \d+\/100\b/, 'the rpm bar of team';
like $s, qr/budget\/day \S+ \$\S+\/\$5\.00 resets in \d/, 'the budget bar of team';
like $s, qr/^ops \(admin\)/m, 'the client ops, an admin';
press($w, 'Tab');
$s = screen_until($w, qr/\[4 Recent\]/, 'Tab to the recent calls');
if ($HAS_RECENT) {
    like $s, qr/^TIME\s+CLIENT\s+MODEL\s+PROVIDER\/KEY\s+ST\s+ATT\s+TOKENS\s+COST\s+TTFB\s+DUR\s+KIND$/m,
        'the recent calls table';
    # every row: time client model provider/key status attempts tokens
    # cost ttfb duration kind
    my @rows = map { [ split ' ' ] } grep { /^\d\d:\d\d:\d\d\.\d{3} / } split /\n/, $s;
    my $refused_row = shift @rows;
    is_deeply [ @{$refused_row}[ 1 .. 4 ] ], [qw(team other - 403)], 'the newest: the refused call, no key';
    my %key_of = (smart => qr{^solo/s1$}, fast => qr{^mock/k\d\d$});
    my @want = map { [ 'team', $_->{model}, 'key', 200, 1, $_->{tokens}, $_->{cost}, 'chat' ] } reverse @sent;
    my @got = map {
        my @r = @$_;
        [ @r[ 1, 2 ], ($r[3] =~ $key_of{ $r[2] } ? 'key' : $r[3]), @r[ 4 .. 7 ], $r[10] // '' ]
    } @rows;
    is_deeply \@got, \@want,
        'every call of the test, newest first: client, model, its provider/key, 200, one attempt, tokens, cost';
    my @times = map { $_->[0] } @rows;
    is_deeply \@times, [ reverse sort @times ], 'the times newest first';
    ok !grep({ $_->[8] !~ /^\d+ms$/ || $_->[9] !~ /^\d+ms$/ } @rows), 'a ttfb and a duration in each row';
    my $hist = status_report(headers => $AUTH, path => '/conductor/status?history=15m');
    my $in15 = 0;
    $in15 += $_ for @{ $hist->{history}{total}{requests} };
    is $in15, $n, "the JSON's history: $n requests in the last 15 minutes";
    like $s, qr/^req\/min \S+ \Q$n\E \(last 15m, now \d+\)/m, 'the header: the requests per minute, and their sum';
}
else {
    like $s, qr/this gateway does not keep recent calls/, 'no recent calls in this gateway\'s JSON: said so';
}
press($w, 'Tab');
$s = screen_until($w, qr/^\[1 Keys\]/m, 'Tab round to the keys');
like $s, qr/^\[1 Keys\]/m, 'Tab goes round';
press($w, '3');
$s = screen_until($w, qr/\[3 Clients\]/, '3: clients');
like $s, qr/\[3 Clients\]/, '3 selects the clients';
press($w, 'BTab');
$s = screen_until($w, qr/\[2 Models\]/, 'Shift-Tab: models');
like $s, qr/\[2 Models\]/, 'Shift-Tab goes back';
press($w, '1');
screen_until($w, qr/^\[1 Keys\]/m, '1: keys');

# a narrow and a tiny terminal, then back
tmux('resize-window', '-t', $w, '-x', 40, '-y', 10);
$s = screen_until($w, qr/^conductor-top/, 'a 40x10 screen');
@lines = split /\n/, $s;
ok @lines <= 10 && !grep({ length > 40 } @lines), 'the 40x10 screen fits';
like $s, qr/^requests \Q$n\E/m, '40x10: the totals';
like $s, qr{mock/k0}, '40x10: keys';
is pane($w, '#{pane_dead}'), '0', '40x10: still running';
tmux('resize-window', '-t', $w, '-x', 20, '-y', 5);
$s = screen_until($w, qr/^conductor-top/, 'a 20x5 screen');
@lines = split /\n/, $s;
ok @lines <= 5 && !grep({ length > 20 } @lines), 'the 20x5 screen fits';
press($w, 'Down', 'NPage', 'Tab', 'End', 'Up');
Time::HiRes::sleep(1);
push @screens, screen($w);
is pane($w, '#{pane_dead}'), '0', '20x5 and keys pressed: still running';
for my $size ([1, 1], [3, 2], [9, 3]) {
    tmux('resize-window', '-t', $w, '-x', $size->[0], '-y', $size->[1]);
    Time::HiRes::sleep(0.6);
    is pane($w, '#{pane_dead}'), '0', "$size->[0]x$size->[1]: still running";
}
tmux('resize-window', '-t', $w, '-x', 120, '-y', 40);
press($w, '1', 'Home');
$s = screen_until($w, qr/^requests \Q$n\E .*\n\[1 Keys\]/m, 'back to 120x40');
like $s, qr/^PROVIDER\/KEY/m, '120x40 again: the full keys view';

# the gateway goes away, and comes back
is_deeply stop_nginx(), [], 'nginx stopped cleanly';
$s = screen_until($w, qr/^unreachable, retrying every 0\.5s: Connection refused \(since \d\d:\d\d:\d\d; figures of \d\d:\d\d:\d\d\)/m,
    'the dashboard to see the gateway gone');
like $s, qr/^unreachable, retrying every 0\.5s: Connection refused/m, 'nginx stopped: unreachable, retrying';
like $s, qr/^requests \Q$n\E /m, 'the last figures stay on screen';
is pane($w, '#{pane_dead}'), '0', 'still running without a gateway';
start_nginx(%NGINX);
$s = screen_until($w, qr/^requests 0 /m, 'the dashboard to see the new gateway');
unlike $s, qr/unreachable/, 'nginx started again: no longer unreachable';
my $r = http_request(POST => '/v1/chat/completions', { Authorization => "Bearer $TEAM_KEY" },
    '{"model":"smart","messages":[{"role":"user","content":"again"}]}');
is $r->{status}, 200, 'a request to the new gateway';
$s = screen_until($w, qr/^requests 1 /m, 'the new request on screen');
like $s, qr/^requests 1 /m, 'the new request counted';

# no key, and a key that is not an admin's
my $w2 = top_window(name => 'nokey');
$s = screen_until($w2, qr/401 Unauthorized/, 'the dashboard without a key');
like $s, qr/^401 Unauthorized: the status wants an admin client key: pass --key or set CONDUCTOR_KEY; retrying/m,
    'no key: says a key is needed';
my $w3 = top_window(key => $TEAM_KEY, name => 'team');
$s = screen_until($w3, qr/403 Forbidden/, 'the dashboard with a non-admin key');
like $s, qr/^403 Forbidden: the client key is not an admin client/m, 'a non-admin key: says so';

# a gateway that takes the connection and never answers: the poll times
# out; with a long timeout, keys are not kept waiting by it, nor is q
my $hung = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 64, Proto => 'tcp')
    or die "listen: $!";
my $hung_url = 'http://127.0.0.1:' . $hung->sockport . '/conductor/status';
my $w4 = top_window(key => $ADMIN_KEY, name => 'hung', url => $hung_url);
$s = screen_until($w4, qr/no answer within/, 'a poll of the hung gateway to time out');
like $s, qr/^unreachable, retrying every 0\.5s: no answer within 0\.5s/m, 'a hung gateway: no answer within the timeout';
my $w5 = top_window(key => $ADMIN_KEY, name => 'slow', url => $hung_url, args => ['--timeout', 120]);
screen_until($w5, qr/^\[1 Keys\]/m, 'the dashboard of a slow gateway');
press($w5, 'Tab');
$s = screen_until($w5, qr/\[2 Models\]/, 'Tab while a poll hangs for 120 s');
like $s, qr/\[2 Models\]/, 'Tab works while a poll waits on the network';
like $s, qr/^waiting for the first answer/m, '... and no answer yet';

# q ends it (for the last one while its poll still waits)
for my $t ($w, $w2, $w3, $w4, $w5) {
    (my $name = $t) =~ s/^top://;
    my $rc = "$env->{TEST_NGINX_SERVROOT}/top-$name.rc";
    is -e $rc ? 'ended' : 'running', 'running', "$t: running before q";
    press($t, 'q');
    wait_for(sub { -s $rc && pane($t, '#{pane_dead}') eq '1' }, timeout => 5, what => "$t to end");
    my ($status) = (do { local (@ARGV, $/) = $rc; <> } // '') =~ /(\d+)/;
    is $status, 0, "$t: q ends conductor-top, exit 0";
    is pane($t, '#{pane_dead}'), '1', "$t: the pane's process is gone";
}

# no key on any screen seen
my @leaks = grep { my $x = $_; grep { index($x, $_) >= 0 } @SECRETS } @screens;
is scalar(@leaks), 0, 'no secret on any of the ' . scalar(@screens) . ' screens captured';
ok scalar(@screens) > 20, 'screens were captured';

ok -S $SOCK_PATH, "tmux's socket $SOCK_PATH";
tmux_end();
ok !-e $SOCK_PATH, 'tmux ended, its socket removed';
close $hung;
is_deeply stop_nginx(), [], 'nginx stopped cleanly';
done_testing();
