# conductor_state_file: the zone's totals, windows and cooldowns across a
# full stop and start of nginx (a reload keeps the zone anyway; a restart
# starts from a new one). Each part starts nginx, sends requests, stops it
# (QUIT: each worker writes the file on exit), starts it again and looks at
# what /conductor/status says. A file that is not what the module writes
# (truncated, garbage, wrong types or version, absurd values) is reported in
# one error line and ignored entirely; nginx always starts and serves.
#
# The state file lives in servroot/state/, not in logs/ (the harness empties
# logs/ at every start).
use lib 't/lib';
use Test::Conductor;
use Test::More ();
use File::Path ();
use JSON::PP ();
use Time::HiRes ();

BEGIN { *subtest = \&Test::More::subtest }

my $env      = harness_env();
my $VALGRIND = $ENV{TEST_NGINX_USE_VALGRIND} ? 1 : 0;
my $DIR      = "$env->{TEST_NGINX_SERVROOT}/state";
my $FILE     = "$DIR/conductor.json";
my $MOCK     = "http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1";
my $JSON     = JSON::PP->new->utf8->canonical;

# an alias of bytes the file must escape ("\u00c3\u00bc..."): UTF-8 of
# "ünï cödé", written and matched as bytes
my $ALIAS    = "\xc3\xbcn\xc3\xaf c\xc3\xb6d\xc3\xa9";

my $SERVER = <<"SERVER";
    location /v1/ { conductor_route; include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf; }
    location = /conductor/status { conductor_status; }
SERVER

# ---------------------------------------------------------------- helpers

# the http block: provider p with the given key lines, model m (and the
# alias with bytes a JSON writer must escape), the state file
sub http_conf {
    my (%o) = @_;
    my $keys  = $o{keys} // 'key k1 "k1;prompt_tokens=100;completion_tokens=50";';
    my $state = $o{state} // "conductor_state_file $FILE interval=" . ($o{interval} // '1h') . ';';
    return <<"HTTP";
    conductor_zone conductor:1m;
    conductor_provider p {
        url $MOCK;
        $keys
        price pm input=1 output=2;
    }
    conductor_model m { p pm; }
    conductor_model "$ALIAS" { p pm; }
    conductor_strategy sequential;
    @{[ $o{extra} // '' ]}
    $state
    upstream conductor_backend { conductor_balancer; }
HTTP
}

sub start {
    my (%o) = @_;
    start_nginx(main_config => $o{main} // '', http_config => http_conf(%o), config => $o{server} // $SERVER);
}

sub fresh_dir {
    File::Path::remove_tree($DIR);
    File::Path::make_path($DIR);
}

sub chat {
    my ($model) = @_;
    my $body = '{"model":"' . ($model // 'm') . '","messages":[]}';
    return http_request(POST => '/v1/chat/completions', {}, $body);
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return undef;
    local $/;
    return scalar <$fh>;
}

sub spit {
    my ($file, $text) = @_;
    open my $fh, '>:raw', $file or die "$file: $!";
    print {$fh} $text;
    close $fh;
}

# the file decoded, undef when it is missing or not JSON
sub state_file {
    my $text = slurp($FILE) // return undef;
    return eval { JSON::PP->new->decode($text) };
}

# a node of the file ({} when there is none, so that a test fails rather
# than dies)
sub node {
    my ($state, $name) = @_;
    return {} unless ref $state eq 'HASH' && ref $state->{nodes} eq 'ARRAY';
    my ($n) = grep { $_->{name} eq $name } @{ $state->{nodes} };
    return $n // {};
}

sub status { return status_report() // {} }

sub leftovers { return glob "$FILE.tmp.*" }

sub key_status {
    my ($st, $key) = @_;
    my ($p) = grep { $_->{name} eq 'p' } @{ $st->{providers} || [] };
    my ($k) = grep { $_->{name} eq ($key // 'k1') } @{ $p->{keys} || [] };
    return $k // {};
}

# what the state file keeps, out of a status object (provider, key, model,
# totals, gateway)
sub kept {
    my ($o) = @_;
    return undef unless ref $o eq 'HASH';
    my %k = map { exists $o->{$_} ? ($_ => $o->{$_}) : () }
        qw(requests responses errors tokens cost_usd estimated unpriced
           ttfb_ms ttfb_avg_ms provider_remaining);
    return \%k;
}

sub kept_all {
    my ($st) = @_;
    my ($p) = grep { $_->{name} eq 'p' } @{ $st->{providers} || [] };
    return {
        totals   => kept($st->{totals}),
        gateway  => kept($st->{gateway}),
        provider => kept($p),
        keys     => [ map { kept($_) } @{ $p->{keys} || [] } ],
        models   => { map { $_->{name} => kept($_) } @{ $st->{models} || [] } },
    };
}

sub clean_stop {
    my ($label) = @_;
    is_deeply stop_nginx(), [], "$label: nginx stopped cleanly";
}

sub log_lines {
    my ($re) = @_;
    return grep { /$re/ } split /\n/, error_log_since_start();
}

# ---------------------------------------------------------------- tests

subtest 'totals across a full stop and start, two workers' => sub {
    fresh_dir();
    mock_clear();
    start(main => 'worker_processes 2;');

    is chat()->{status}, 200, "request $_" for 1 .. 3;
    is chat($ALIAS)->{status}, 200, 'a request to the alias of odd bytes';
    my $before = status_wait(sub { $_->{totals}{requests} == 4 }, what => 'four requests counted');
    is $before->{totals}{requests}, 4, 'four requests before the stop';
    is $before->{totals}{tokens}{prompt}, 400, 'their prompt tokens';
    cmp_ok abs($before->{totals}{cost_usd} - 0.0008), '<', 1e-12, 'and their cost';
    clean_stop('first run');

    my $state = state_file();
    ok $state, 'the file was written on exit, and is JSON';
    is $state->{version}, 1, 'version 1';
    is node($state, 'key:p/k1')->{requests}, 4, 'with the final totals of the key';
    is node($state, 'key:p/k1')->{cost}, '0.000800000000', 'cost exact, as a string';
    is node($state, 'model:m')->{requests}, 3, 'and of the alias';
    ok node($state, 'gateway')->{name}, 'the gateway has its node';
    is node($state, "model:$ALIAS")->{requests}, 1, 'a name of any bytes comes back as it was';
    like slurp($FILE), qr/"model:\\u00c3\\u00bcn\\u00c3\\u00af c/, 'escaped byte by byte';
    is_deeply [ leftovers() ], [], 'no temporary file left';
    unlike slurp($FILE), qr/k1;prompt_tokens/, 'no secret in the file';

    start(main => 'worker_processes 2;');
    my $after = status();
    is_deeply kept_all($after), kept_all($before), 'every total the status shows is back';
    my @notice = log_lines(qr/\[notice\].*state file ".*" of \d+ s ago: the counters of \d+ nodes restored, 0 dropped/);
    is scalar(@notice), 1, 'the load is reported at notice level' or diag error_log_since_start();

    is chat()->{status}, 200, 'one more request';
    my $more = status_wait(sub { $_->{totals}{requests} == 5 }, what => 'five requests');
    is $more->{totals}{requests}, 5, 'it adds to the restored totals';
    clean_stop('second run');
    is node(state_file(), 'key:p/k1')->{requests}, 5, 'the file has it';
};

subtest 'a fast stop (TERM) writes the file too' => sub {
    fresh_dir();
    mock_clear();
    start();
    is chat()->{status}, 200, "request $_" for 1 .. 2;
    my $pid = nginx_pid();
    kill 'TERM', $pid;
    wait_for(sub {
        my $stat = slurp("/proc/$pid/stat") // '';
        !kill(0, $pid) || $stat =~ /^\d+ \(.*\) Z/s;
    }, timeout => 20, what => 'nginx gone after TERM');
    # stop_nginx() now finds nginx gone: that is this test's doing
    my @problems = grep { !/before the end of the test/ } @{ stop_nginx() };
    is_deeply \@problems, [], 'no other problem';
    is node(state_file(), 'key:p/k1')->{requests}, 2, 'the file has both requests';
};

subtest 'an rpm limit still holds after a restart' => sub {
    # two runs inside one minute (the window's previous bucket counts less
    # as the next minute goes on); under valgrind they take a while
    away_from_minute_edge($ENV{TEST_NGINX_USE_VALGRIND} ? 15 : 45);
    fresh_dir();
    mock_clear();
    start(keys => 'key k1 s1 rpm=3;');
    is chat()->{status}, 200, "request $_ within the limit" for 1 .. 3;
    clean_stop('first run');

    start(keys => 'key k1 s1 rpm=3;');
    my $st = status();
    is key_status($st)->{limits}{rpm}{used}, 3, 'the window is back: 3 used';
    my $r = chat();
    is $r->{status}, 429, 'the fourth request is refused';
    ok !exists $r->{headers}{'x-mock-port'}, 'by the gateway itself';
    like $r->{body}, qr/at its limit/, 'at its limit';
    is scalar(@{ mock_requests() }), 3, 'the provider got three requests in all';
    clean_stop('second run');
};

subtest 'a cooldown survives a restart, and is clamped to conductor_cooldown max=' => sub {
    fresh_dir();
    mock_clear();
    my $keys = 'key k1 "k1;status=429;retry_after=3000";';
    start(keys => $keys, extra => 'conductor_cooldown max=1h;');
    my $r = chat();
    is $r->{status}, 429, 'the provider answers 429 with Retry-After: 3000';
    my $until = key_status(status())->{cooldown_until};
    my $now = int(Time::HiRes::time() * 1000);
    ok $until && $until > $now + 2_900_000 && $until <= $now + 3_000_000, "cooling down for 3000 s ($until)";
    clean_stop('first run');

    start(keys => $keys, extra => 'conductor_cooldown max=1h;');
    is key_status(status())->{cooldown_until}, $until, 'the same cooldown after a restart';
    $r = chat();
    is $r->{status}, 429, 'a request is refused';
    ok !exists $r->{headers}{'x-mock-port'}, 'by the gateway: the key is cooling down';
    is scalar(@{ mock_requests() }), 1, 'the provider was not asked again';
    clean_stop('second run');

    start(keys => $keys, extra => 'conductor_cooldown max=20s;');
    $now = int(Time::HiRes::time() * 1000);
    my $clamped = key_status(status())->{cooldown_until};
    ok $clamped && $clamped > $now && $clamped <= $now + 20_000,
        "with max=20s it ends within 20 s ($clamped, now $now)";
    ok scalar(log_lines(qr/1 times in the future clamped or dropped/)), 'the clamp is counted in the notice';
    clean_stop('third run');
};

subtest 'the file is written every interval, by rename' => sub {
    fresh_dir();
    mock_clear();
    start(interval => '1s');
    my ($first, %inodes);
    wait_for(sub { $first = state_file() }, what => 'the first interval write');
    ok $first, 'written while nginx runs';
    $inodes{ (stat $FILE)[1] } = 1;

    is chat()->{status}, 200, 'a request';
    my $n;
    wait_for(sub {
        $inodes{ (stat $FILE)[1] // 0 } = 1;
        $n = node(state_file(), 'key:p/k1');
        ($n->{requests} // 0) == 1;
    }, what => 'the request in the file');
    is $n->{requests}, 1, 'the next write has it';
    cmp_ok +(state_file() // {})->{written} // 0, '>', ($first // {})->{written} // 0, 'a later "written" time';
    delete $inodes{0};
    cmp_ok scalar(keys %inodes), '>=', 2, 'new inodes: the file is replaced whole, never rewritten in place';
    ok nginx_running(), 'without nginx exiting';
    clean_stop('interval');
};

subtest 'the file is always whole, read while it is written under load' => sub {
    fresh_dir();
    mock_clear();
    my $keys = join ' ', map { "key k$_ s$_;" } 1 .. 40;
    start(keys => $keys, interval => '100ms', main => 'worker_processes 2;');
    wait_for(sub { -e $FILE }, what => 'the first write');

    my ($reads, $bad, %written) = (0, 0);
    my $deadline = Time::HiRes::time() + ($VALGRIND ? 10 : 3);
    while (Time::HiRes::time() < $deadline) {
        http_request(POST => '/v1/chat/completions', {}, '{"model":"m","messages":[]}', await_log => 0);
        for (1 .. 5) {
            my $text = slurp($FILE);
            $reads++;
            my $j = defined $text ? eval { JSON::PP->new->decode($text) } : undef;
            if (!$j || ref $j->{nodes} ne 'ARRAY' || @{ $j->{nodes} } < 40) {
                $bad++;
                diag('not whole: ' . substr($text // '(missing)', -200)) if $bad <= 3;
                next;
            }
            $written{ $j->{written} } = 1;
        }
    }
    cmp_ok scalar(keys %written), '>=', 5, scalar(keys %written) . " writes seen in $reads reads";
    is $bad, 0, 'every read found a whole file';
    clean_stop('under load');
    is_deeply [ leftovers() ], [], 'no temporary file left';
};

subtest 'a missing file: reported, nginx starts from zero' => sub {
    fresh_dir();
    mock_clear();
    start();
    ok scalar(log_lines(qr/\[notice\].*no state file "\Q$FILE\E" yet/)), 'a notice says there is none';
    is chat()->{status}, 200, 'nginx serves';
    is status()->{totals}{requests}, 1, 'from zero';
    clean_stop('missing');
    ok state_file(), 'the file exists after the stop';
};

# a file this configuration would accept, then spoiled in several ways
my $now = time;
my $good = $JSON->encode({ version => 1, written => $now * 1000, nodes => [
    { name => 'key:p/k1', requests => 5, responses => 5 },
    { name => 'provider:p', requests => 5 },
] });

my @spoiled = (
    [ 'a truncated file', substr($good, 0, int(length($good) / 2)), qr/not valid JSON: .* at line \d+, column \d+/ ],
    [ 'an empty file', '', qr/not valid JSON/ ],
    [ 'garbage', join('', map { chr(($_ * 131 + 7) % 256) } 1 .. 3000), qr/not valid JSON/ ],
    [ 'JSON but not an object', '[1,2,3]', qr/not a JSON object/ ],
    [ 'no version', '{"nodes":[]}', qr/no "version": not a state file of this module/ ],
    [ 'another version', do { (my $t = $good) =~ s/"version":1/"version":7/; $t }, qr/version 7, this module reads version 1/ ],
    [ 'a counter of the wrong type (after a good node)',
      $JSON->encode({ version => 1, nodes => [ { name => 'key:p/k1', requests => 5 }, { name => 'provider:p', requests => '5' } ] }),
      qr/node 1: "requests" is not an integer >= 0/ ],
    [ 'a negative counter', $JSON->encode({ version => 1, nodes => [ { name => 'key:p/k1', requests => -5 } ] }),
      qr/node 0: "requests" is not an integer >= 0/ ],
    [ 'a number too large for any counter', '{"version":1,"nodes":[{"name":"key:p/k1","requests":99999999999999999999999}]}',
      qr/not valid JSON: too big integer/ ],
    [ 'a cost that is not a sum', $JSON->encode({ version => 1, nodes => [ { name => 'key:p/k1', cost => 1.5 } ] }),
      qr/node 0: "cost" is not a sum of USD/ ],
    [ 'a window of the wrong shape', $JSON->encode({ version => 1, nodes => [ { name => 'key:p/k1', windows => { rpm => [1, 2] } } ] }),
      qr/node 0: window "rpm" is not \[prev, cur, start\]/ ],
    [ 'a node without a name', $JSON->encode({ version => 1, nodes => [ { requests => 5 } ] }),
      qr/node 0: "name" is not the name of a node/ ],
    [ 'two nodes of one name', $JSON->encode({ version => 1, nodes => [ { name => 'key:p/k1', requests => 5 }, { name => 'key:p/k1', requests => 6 } ] }),
      qr/node 1 has the name of node 0/ ],
    [ 'nodes that are not an array', '{"version":1,"nodes":{"key:p/k1":{}}}', qr/"nodes" is not an array/ ],
);

for my $case (@spoiled) {
    my ($what, $text, $re) = @$case;
    subtest "$what: reported in one line and ignored" => sub {
        fresh_dir();
        mock_clear();
        spit($FILE, $text);
        start();
        my @lines = log_lines(qr/state file/);
        is scalar(@lines), 1, 'one line about the state file' or diag join "\n", @lines;
        like $lines[0] // '', qr/\[error\].*conductor: state file "\Q$FILE\E" ignored: /, 'an error naming the file';
        like $lines[0] // '', $re, 'saying what is wrong';
        is chat()->{status}, 200, 'nginx serves';
        my $st = status();
        is key_status($st)->{requests}, 1, 'nothing of the file was applied';
        is $st->{totals}{requests}, 1, 'the totals start from zero';
        clean_stop($what);
        is node(state_file(), 'key:p/k1')->{requests}, 1, 'the file is whole again after the stop';
    };
}

subtest 'a file of another configuration: the names that match are kept' => sub {
    fresh_dir();
    mock_clear();
    # not near the end of a minute: the rpm window must stay the current one
    my $s = time % 60;
    sleep 61 - $s if $s > 50;
    my $t = time;
    my $now_ms = int(Time::HiRes::time() * 1000);
    spit($FILE, $JSON->encode({ version => 1, written => $now_ms - 5000, nodes => [
        { name => 'key:p/k1', requests => 7, responses => 6, errors => { '5xx' => 1 },
          tokens => { prompt => 70, completion => 30 }, cost => '0.000130000000',
          windows => { rpm => [0, 2, $t - $t % 60] },
          cooldown_until => 32503680000000, disabled => 32503680000000 },       # the year 3000
        { name => 'key:p/k2', requests => 1, windows => { rpm => [0, 9, $t - $t % 60 + 600] } },  # not begun
        { name => 'key:p/gone', requests => 100 },
        { name => 'provider:other', requests => 100 },
        { name => 'model:gone', requests => 100 },
        { name => 'gateway', requests => 2, errors => { '429' => 2 } },
    ] }));
    start(keys => 'key k1 s1 rpm=10; key k2 s2 rpm=10;');

    my @notice = log_lines(qr/state file/);
    is scalar(@notice), 1, 'one line about the state file';
    like $notice[0] // '', qr/\[notice\].*the counters of 3 nodes restored, 3 dropped \(not in this configuration\), 3 times in the future clamped or dropped/,
        'three restored, three dropped, three times clamped or dropped';

    my $st = status();
    my $k1 = key_status($st, 'k1');
    is $k1->{requests}, 7, 'k1 has its requests';
    is $k1->{errors}{'5xx'}, 1, 'and its errors';
    is $k1->{tokens}{prompt}, 70, 'and its tokens';
    cmp_ok abs($k1->{cost_usd} - 0.00013), '<', 1e-12, 'and its cost';
    is $k1->{limits}{rpm}{used}, 2, 'and its window';
    my $now = int(Time::HiRes::time() * 1000);
    ok $k1->{cooldown_until} && $k1->{cooldown_until} <= $now + 15 * 60 * 1000,
        'a cooldown in the year 3000 ends within conductor_cooldown max= (15 min)';
    is key_status($st, 'k2')->{limits}{rpm}{used}, 0, 'a window that has not begun is dropped';
    is key_status($st, 'k2')->{requests}, 1, 'the rest of k2 is kept';
    is $st->{gateway}{requests}, 2, "the gateway's own counts are back";

    my $r = chat();
    is $r->{status}, 200, 'nginx serves';
    is $r->{headers}{'x-conductor-key'}, 'k2', 'by k2 (k1 is cooling down)';
    clean_stop('other configuration');
    my $file = state_file();
    ok !node($file, 'key:p/gone')->{name}, 'the dropped names are gone from the next file';
};

subtest "a client's totals, limit window and budgets survive a restart" => sub {
    fresh_dir();
    mock_clear();
    my $secret = 'alice-client-secret-0123456789';
    my %o = (
        extra  => "conductor_client alice { key $secret; limit rpm=2; budget 1 per=day; budget 5 per=total; }",
        server => <<"SERVER",
    location /v1/ { conductor_auth on; conductor_route; include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf; }
    location = /conductor/status { conductor_status; }
SERVER
    );
    my $ask = sub { http_request(POST => '/v1/chat/completions', { Authorization => "Bearer $secret" },
                                 '{"model":"m","messages":[]}') };
    # not near the end of a minute: the client's rpm window must stay the current one
    Time::HiRes::sleep(0.2) while time % 60 > ($VALGRIND ? 15 : 45);
    start(%o);
    is $ask->()->{status}, 200, "request $_ of the client" for 1 .. 2;
    my ($before) = grep { $_->{name} eq 'alice' } @{ status()->{clients} || [] };
    cmp_ok abs(($before->{budgets}{day}{spent_usd} // 0) - 0.0004), '<', 1e-12, 'its day budget spent 0.0004 USD';
    clean_stop('first run');

    my $file = slurp($FILE) // '';
    like $file, qr/"name":"client:alice"/, 'the client has its node in the file';
    unlike $file, qr/\Q$secret\E/, 'never its key';
    like $file, qr/"spend":\{"day":\{"spent":"0\.000400000000","period":\d+\},"total":\{"spent":"0\.000400000000","period":0\}\}/,
        'its budgets, spent per period';

    start(%o);
    my ($after) = grep { $_->{name} eq 'alice' } @{ status()->{clients} || [] };
    is_deeply kept($after), kept($before), "the client's totals are back";
    is_deeply [ map { $after->{budgets}{$_}{spent_usd} } qw(day total) ],
              [ map { $before->{budgets}{$_}{spent_usd} } qw(day total) ], 'and what its budgets spent';
    is $after->{limits}{rpm}{used}, 2, 'and its rpm window';
    my $r = $ask->();
    is $r->{status}, 429, 'its third request in the minute is refused';
    is scalar(@{ mock_requests() }), 2, 'the provider got two requests in all';
    clean_stop('second run');
};

subtest 'a directory the workers cannot write in: reported, nginx serves' => sub {
    fresh_dir();
    mock_clear();
    my ($file, $main);
    if ($> != 0) {
        chmod 0555, $DIR;
        $file = $FILE;
    }
    elsif (!$VALGRIND) {
        # the usual case: the master (root) reads, the workers (nobody) write
        chmod 0755, $DIR;
        $file = $FILE;
        $main = 'user nobody nogroup;';
    }
    else {
        # one process as root under valgrind: a directory root cannot write
        $file = '/sys/conductor-state-test.json';
    }
    start_nginx(main_config => $main // '',
                http_config => http_conf(state => "conductor_state_file $file interval=1s;"),
                config => $SERVER);
    is chat()->{status}, 200, 'nginx serves';
    my $re = qr/\[error\].*conductor: state file "\Q$file\E" not written, the directory must be writable by nginx's worker user: open\(\) "\Q$file\E\.tmp\.\d+" failed \(13: Permission denied\)/;
    wait_for(sub { log_lines($re) }, what => 'the error');
    Time::HiRes::sleep($VALGRIND ? 10 : 3.5);
    my @lines = log_lines($re);
    is scalar(@lines), 1, 'reported once, not at every interval' or diag join "\n", @lines;
    is chat()->{status}, 200, 'nginx still serves';
    clean_stop('unwritable');
    ok !-e $file, 'no file';
    chmod 0755, $DIR;
};

done_testing();
