# bin/conductor-convert: the Conductor seed's config.yaml as the module's
# nginx configuration. The seed's own example converts and passes nginx -t,
# is equivalent to the hand-written conf/conductor-seed.conf, and, pointed at
# the mock providers, routes through a real nginx (the right upstream model
# and key, a requests_per_minute limit, max_retries, request_timeout); API
# keys never reach the output (0600 files, or env= with --env); broken files
# are refused with their line number and exit status 2.
use lib 't/lib';
use Test::Conductor;
use Test::More ();
use File::Path ();
use File::Copy ();
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();
use JSON::PP ();

BEGIN { *subtest = \&Test::More::subtest; *explain = \&Test::More::explain }

my $env     = harness_env();
my $root    = $env->{TEST_NGINX_ROOT};
my $module  = $ENV{TEST_NGINX_MODULE} // "$root/build/ngx_http_conductor_module.so";
my $nginx   = $ENV{TEST_NGINX_BINARY} // (-x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : 'nginx');
my $convert = "$root/bin/conductor-convert";
my $work    = "$env->{TEST_NGINX_SERVROOT}/convert";
my ($gw, $m1, $m2, $m3, $dead) =
    @$env{qw(TEST_NGINX_PORT TEST_NGINX_MOCK_PORT TEST_NGINX_MOCK_PORT2
             TEST_NGINX_MOCK_PORT3 TEST_NGINX_DEAD_PORT)};

# the seed's variables of the caller must not change what the tests expect
delete @ENV{qw(CONDUCTOR_HOST CONDUCTOR_PORT CONDUCTOR_LOG_LEVEL CONDUCTOR_CONFIG_PATH)};

File::Path::remove_tree($work);
File::Path::make_path($work);

sub slurp { my ($f) = @_; open my $fh, '<', $f or return undef; local $/; return scalar <$fh> }
sub spew  { my ($f, $t) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $t; close $fh }
sub mode  { return sprintf '%04o', (stat $_[0])[2] & 07777 }

# runs the converter: { status, out, err }; env => { NAME => value or undef }
sub run_convert {
    my ($args, %o) = @_;
    my ($out, $err) = ("$work/.out", "$work/.err");
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>', $err or POSIX::_exit(126);
        for my $k (keys %{ $o{env} || {} }) {
            if (defined $o{env}{$k}) { $ENV{$k} = $o{env}{$k} } else { delete $ENV{$k} }
        }
        chdir $o{cwd} if $o{cwd};
        { no warnings 'exec'; exec $convert, @$args; }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return { status => $? >> 8, out => slurp($out), err => slurp($err) };
}

# the options that put everything a running nginx writes under $dir
sub local_args {
    my ($dir) = @_;
    File::Path::make_path("$dir/run", "$dir/logs");
    return ('--module', $module, '--snippets', "$root/conf", '--run-dir', "$dir/run",
            '--error-log', "$dir/logs/error.log", '--access-log', "$dir/logs/usage.log");
}

# providers on the internet are never reached: each is pointed at a dead port
sub offline {
    my ($conf) = @_;
    (my $c = $conf) =~ s{^(\s*url\s+https://[^;]+;)}{$1 address 127.0.0.1:$dead;}mg;
    return $c;
}

sub nginx_t {
    my ($dir, $conf, %envs) = @_;
    local @ENV{ keys %envs } = values %envs;
    my $r = `$nginx -t -p $dir/ -c $conf 2>&1`;
    return ($? >> 8, $r);
}

my %running;    # pid file => 1

sub nginx_start {
    my ($dir, $conf, %envs) = @_;
    local @ENV{ keys %envs } = values %envs;
    my $r = `$nginx -p $dir/ -c $conf 2>&1`;
    die "nginx did not start: $r\n" . (slurp("$dir/logs/error.log") // '') if $?;
    my $pidfile = "$dir/run/nginx.pid";
    $running{$pidfile} = 1;
    wait_for(sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$gw") }, what => 'the gateway to listen')
        or die "nginx does not listen\n";
    return $pidfile;
}

sub nginx_stop {
    my ($pidfile) = @_;
    my ($pid) = (slurp($pidfile) // '') =~ /(\d+)/;
    delete $running{$pidfile};
    return unless $pid;
    kill 'QUIT', $pid;
    for (1 .. 400) { last unless kill 0, $pid; Time::HiRes::sleep(0.05) }
    if (kill 0, $pid) { kill 'KILL', $pid; diag "nginx $pid killed after QUIT" }
}

END { nginx_stop($_) for keys %running }

sub chat {
    my ($model, %o) = @_;
    my $body = qq({"model":$model,"messages":[{"role":"user","content":"hi"}]});
    return http_request(POST => '/v1/chat/completions', {}, $body, port => $gw, %o);
}

sub json_str { my ($s) = @_; return JSON::PP->new->allow_nonref->encode($s) }

# $yaml in $work/$name/config.yaml, converted with local_args and the
# gateway's port (and @opts); the conf in nginx.conf: ($dir, the result)
sub convert_yaml {
    my ($name, $yaml, @opts) = @_;
    my $dir = "$work/$name";
    File::Path::make_path($dir);
    spew("$dir/config.yaml", $yaml);
    my $r = run_convert([ local_args($dir), '--listen', "127.0.0.1:$gw", @opts, "$dir/config.yaml" ]);
    is $r->{status}, 0, 'converted' or diag $r->{err};
    spew("$dir/nginx.conf", $r->{out});
    return ($dir, $r);
}

# ------------------------------------------------------------ an nginx conf, read back

# [name, [args], [children] | undef] for each directive of an nginx
# configuration (quotes and escapes resolved, comments dropped)
sub conf_tree {
    my ($text) = @_;
    my @tok;
    while ($text =~ /\G(?:\s+|#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([{};])|([^\s{};"']+))/gcs) {
        if    (defined $1) { (my $s = $1) =~ s/\\(.)/$1/gs; push @tok, [w => $s] }
        elsif (defined $2) { (my $s = $2) =~ s/\\(.)/$1/gs; push @tok, [w => $s] }
        elsif (defined $3) { push @tok, [p => $3] }
        elsif (defined $4) { push @tok, [w => $4] }
    }
    die 'unparsed configuration at ' . substr($text, pos($text) // 0, 40) if (pos($text) // 0) < length $text;
    my $i = 0;
    my $block;
    $block = sub {
        my @out;
        my @cur;
        while ($i < @tok) {
            my ($t, $v) = @{ $tok[$i++] };
            if ($t eq 'w') { push @cur, $v; next }
            if ($v eq ';') { push @out, [shift @cur, [@cur], undef]; @cur = (); next }
            if ($v eq '{') { my $name = shift @cur; my @a = @cur; @cur = (); push @out, [$name, \@a, $block->()]; next }
            return \@out;    # }
        }
        return \@out;
    };
    return $block->();
}

sub find_all { my ($list, $name) = @_; return grep { $_->[0] eq $name } @$list }
sub find_one { my ($list, $name) = @_; my @d = find_all($list, $name); return $d[0] }

# What a conductor configuration means, without the key sources, comments,
# paths, logs and layout: providers (url, api, keys with their limits),
# models, strategy, retries, built-in names, the timeouts that apply to the
# routed location, the routed and model locations, the balancer.
sub meaning {
    my ($text) = @_;
    my $top  = conf_tree($text);
    my $http = find_one($top, 'http');
    my $h    = $http ? $http->[2] : $top;
    my %m;

    for my $p (find_all($h, 'conductor_provider')) {
        my %p = (keys => []);
        for my $d (@{ $p->[2] }) {
            if ($d->[0] eq 'key') {
                my ($name, $src, @lim) = @{ $d->[1] };
                push @{ $p{keys} }, [$name, { map { split /=/, $_, 2 } @lim }];
            }
            else { $p{ $d->[0] } = join ' ', @{ $d->[1] } }
        }
        $m{providers}{ $p->[1][0] } = \%p;
    }
    for my $md (find_all($h, 'conductor_model')) {
        $m{models}{ $md->[1][0] } = { map { $_->[0] => join(' ', @{ $_->[1] }) } @{ $md->[2] } };
    }
    for my $d (qw(conductor_strategy conductor_retries conductor_builtin_models)) {
        my $x = find_one($h, $d);
        $m{$d} = $x ? join(' ', @{ $x->[1] }) : undef;
    }
    my $up = find_one($h, 'upstream');
    $m{upstream} = $up ? [ $up->[1][0], map { join ' ', $_->[0], @{ $_->[1] } } @{ $up->[2] } ] : undef;

    my $server = find_one($h, 'server');
    my ($route) = grep { "@{ $_->[1] }" eq '/v1/' } find_all($server->[2], 'location');
    my ($models) = grep { "@{ $_->[1] }" eq '= /v1/models' } find_all($server->[2], 'location');
    for my $t (qw(proxy_connect_timeout proxy_read_timeout)) {
        my ($x) = grep {defined} map { find_one($_, $t) } $route->[2], $server->[2], $h;
        $m{$t} = $x ? $x->[1][0] : undef;
    }
    $m{route} = [ map { $_->[0] eq 'include' ? 'include ' . ($_->[1][0] =~ s{.*/}{}r) : $_->[0] }
                  grep { $_->[0] =~ /^(conductor_route|include)$/ } @{ $route->[2] } ];
    $m{models_location} = [ map { $_->[0] } @{ $models->[2] } ];
    return \%m;
}

# ------------------------------------------------------------ the seed's example

subtest "the seed's example config.yaml: converted, nginx -t, no key in the output" => sub {
    my $dir = "$work/example";
    File::Path::make_path("$dir/config");
    File::Copy::copy("$root/t/data/conductor-config.example.yaml", "$dir/config/config.yaml") or die $!;
    my $r = run_convert([ local_args($dir), "$dir/config/config.yaml" ]);
    is $r->{status}, 0, 'exit status 0' or diag $r->{err};
    is $r->{err}, '', 'nothing on stderr';

    my $conf = $r->{out};
    for my $secret (qw(csk-xxxxx csk-yyyyy nvapi-xxxxx)) {
        unlike $conf, qr/\Q$secret\E/, "$secret is not in the output";
    }
    like $conf, qr/^load_module \Q$module\E;/m, 'a full configuration: load_module';
    like $conf, qr/^events \{/m, 'events';
    like $conf, qr/^http \{/m, 'http';
    like $conf, qr/^        listen 127\.0\.0\.1:8000;/m, 'listen 127.0.0.1:8000 by default';

    # the default secrets folder is beside the YAML
    my $s = "$dir/config/secrets";
    is mode($s), '0700', 'secrets folder 0700';
    my %want = ('cerebras/account-1' => 'csk-xxxxx', 'cerebras/account-2' => 'csk-yyyyy',
                'nvidia/nvidia-main' => 'nvapi-xxxxx');
    for my $f (sort keys %want) {
        is mode("$s/$f"), '0600', "$f is 0600";
        is slurp("$s/$f"), $want{$f}, "$f holds its key";
        (my $p = $f) =~ s{/.*}{};
        is mode("$s/$p"), '0700', "$p/ is 0700";
        like $conf, qr/key  \S+ file=\Q$s\/$f\E\s/, "the output names $f with file=";
    }
    is_deeply [ sort map { s{^\Q$s\E/}{}r } glob("$s/*/*") ], [ sort keys %want ], 'no other file in the folder';

    spew("$dir/nginx.conf", offline($conf));
    my ($st, $out) = nginx_t($dir, "$dir/nginx.conf");
    is $st, 0, 'nginx -t passes with the module from build/' or diag $out;
};

subtest "the seed's config.yaml converted is equivalent to conf/conductor-seed.conf" => sub {
    my $dir = "$work/seed";
    File::Path::make_path($dir);
    File::Copy::copy("$root/t/data/conductor-seed.yaml", "$dir/config.yaml") or die $!;
    my $r = run_convert([ local_args($dir), "$dir/config.yaml" ]);
    is $r->{status}, 0, 'exit status 0' or diag $r->{err};

    my $got  = meaning($r->{out});
    my $want = meaning(slurp("$root/conf/conductor-seed.conf"));
    is_deeply $got, $want, 'same providers, keys and limits, models, strategy, retries, timeouts, locations'
        or diag explain { converted => $got, hand_written => $want };
    is scalar(keys %{ $got->{models} }), 4, 'the four aliases';
    is $got->{providers}{cerebras}{keys}[0][1]{rph}, 900, "the Cerebras free tier's hourly limit";

    # without the free tier's limits, only what the YAML says
    $r = run_convert([ local_args($dir), '--no-free-tier-limits', "$dir/config.yaml" ]);
    is_deeply meaning($r->{out})->{providers}{cerebras}{keys}[0], ['account-1', { rpm => 30, tpm => 60000 }],
        '--no-free-tier-limits: rpm and tpm only';
};

# ------------------------------------------------------------ through nginx

# the seed's shape, its providers at the mock's ports, and a third provider
# with an alias and a model that need quoting
my $route_yaml = <<"YAML";
conductor:
  scheduling_strategy: round_robin
  request_timeout: 30
  max_retries: 3
  retry_delay: 1.0
models:
  my-model:
    cerebras: "llama-3.3-70b"
    nvidia: "meta/llama-3.3-70b-instruct"
  'odd "alias"; {x}':
    other: 'up "model" \\ #1'
providers:
  cerebras:
    enabled: true
    base_url: http://127.0.0.1:$m1/v1
    keys:
      - name: account-1
        api_key: csk-route-1
        requests_per_minute: 30
        tokens_per_minute: 60000
      - name: account-2
        api_key: csk-route-2
        requests_per_minute: 30
        tokens_per_minute: 60000
  nvidia:
    enabled: true
    base_url: http://127.0.0.1:$m2/v1
    keys:
      - name: nvidia-main
        api_key: nvapi-route
        requests_per_minute: 40
        tokens_per_minute: 100000
  other:
    base_url: http://127.0.0.1:$m3/v1
    keys:
      - name: o1
        api_key: other-route
  unused:
    enabled: false
    keys:
      - name: u1
YAML

start_mock();

subtest 'routed through nginx: upstream model and key per provider, built-in names, quoting' => sub {
    my ($dir, $r) = convert_yaml('route', $route_yaml);
    like $r->{err}, qr/^conductor-convert: note: \S+: line \d+: provider unused left out \(enabled: false\)$/m,
        'a disabled provider is left out, with a note (it needs no base_url, its key no api_key)';
    unlike $r->{out}, qr/conductor_provider unused/, 'not in the output';
    my $pidfile = nginx_start($dir, "$dir/nginx.conf");

    mock_clear();
    my @st = map { chat('"my-model"')->{status} } 1 .. 4;
    is_deeply \@st, [200, 200, 200, 200], 'my-model: 4 answers';
    my @seen = map { [ $_->{port}, $_->{json}{model}, $_->{key} ] } @{ mock_requests() };
    is_deeply [ map { $_->[0] } @seen ], [ $m1, $m2, $m1, $m2 ], 'round_robin alternates the providers';
    is_deeply [ sort map { "$_->[1] $_->[2]" } grep { $_->[0] == $m1 } @seen ],
        [ 'llama-3.3-70b csk-route-1', 'llama-3.3-70b csk-route-2' ],
        "cerebras: its model name, each of its keys";
    is_deeply [ map { "$_->[1] $_->[2]" } grep { $_->[0] == $m2 } @seen ],
        [ ('meta/llama-3.3-70b-instruct nvapi-route') x 2 ], "nvidia: its model name and key";

    mock_clear();
    chat('"llama-8b"') for 1 .. 2;
    is_deeply [ sort map { "$_->{port} $_->{json}{model}" } @{ mock_requests() } ],
        [ sort "$m1 llama3.1-8b", "$m2 meta/llama-3.1-8b-instruct" ], 'a built-in name, both providers';

    mock_clear();
    my $a = chat(json_str('odd "alias"; {x}'));
    is $a->{status}, 200, 'an alias that needs quotes';
    my ($o) = @{ mock_requests() };
    is_deeply [ $o->{port}, $o->{json}{model}, $o->{key} ], [ $m3, 'up "model" \\ #1', 'other-route' ],
        'its model reaches the provider byte for byte';

    my $models = http_request(GET => '/v1/models', {}, undef, port => $gw);
    my %ids = map { $_->{id} => 1 } @{ $models->{json}{data} || [] };
    ok $ids{'my-model'} && $ids{'llama-70b'}, '/v1/models lists the aliases and the built-in names';
    my $h = http_request(GET => '/health', {}, undef, port => $gw);
    is $h->{json}{status}, 'healthy', '/health';

    nginx_stop($pidfile);
    my $log = slurp("$dir/logs/error.log") // '';
    unlike $log, qr/\[(?:alert|emerg|crit)\]/, 'no alert in the error log';
    unlike $log, qr/csk-route|nvapi-route|other-route/, 'no key in the error log';
};

# one YAML, two max_retries: a limited key, a key that fails, a slow key
sub limits_yaml {
    my ($retries) = @_;
    return <<"YAML";
conductor:
  scheduling_strategy: sequential
  request_timeout: 1
  max_retries: $retries
models:
  limited: {lim: limited-model}
  flaky: {flaky: flaky-model}
  slow: {slow: slow-model}
providers:
  lim:
    base_url: http://127.0.0.1:$m1/v1
    keys:
      - {name: l1, api_key: lim-key, requests_per_minute: 3}
  flaky:
    base_url: http://127.0.0.1:$m2/v1
    keys:
      - {name: bad, api_key: "bad-key;status=503"}
      - {name: good, api_key: good-key}
  slow:
    base_url: http://127.0.0.1:$m3/v1
    keys:
      - {name: s1, api_key: "slow-key;ttfb=4000"}
YAML
}

subtest 'requests_per_minute holds; max_retries 0; request_timeout' => sub {
    my ($dir, $r) = convert_yaml('limits0', limits_yaml(0));
    like $r->{out}, qr/key  l1 file=\S+\s+rpm=3;/, 'rpm=3';
    like $r->{out}, qr/proxy_read_timeout 1s;/, 'request_timeout 1: proxy_read_timeout 1s';
    like $r->{out}, qr/^    conductor_retries 0;$/m, 'conductor_retries 0';
    like $r->{out}, qr/^    conductor_strategy sequential;$/m, 'conductor_strategy sequential';
    my $pidfile = nginx_start($dir, "$dir/nginx.conf");

    away_from_minute_edge();
    mock_clear();
    my @st = map { chat('"limited"')->{status} } 1 .. 5;
    is_deeply \@st, [200, 200, 200, 429, 429], 'requests_per_minute 3: three answers, then 429';
    is scalar(grep { $_->{port} == $m1 } @{ mock_requests() }), 3, 'three reached the provider';

    mock_clear();
    is chat('"flaky"')->{status}, 503, 'max_retries 0: the failing key\'s 503, no other attempt';
    is_deeply [ map { $_->{key} } @{ mock_requests() } ], ['bad-key;status=503'], 'one attempt';

    mock_clear();
    is chat('"slow"', timeout => 10)->{status}, 504, 'request_timeout 1: a provider slower than that is a 504';
    nginx_stop($pidfile);
};

subtest 'max_retries 1: the next key answers' => sub {
    my ($dir) = convert_yaml('limits1', limits_yaml(1));
    my $pidfile = nginx_start($dir, "$dir/nginx.conf");
    mock_clear();
    is chat('"flaky"')->{status}, 200, 'the retry on the next key answers 200';
    is_deeply [ map { $_->{key} } @{ mock_requests() } ], ['bad-key;status=503', 'good-key'], 'two attempts';
    nginx_stop($pidfile);
};

subtest '--env: env= names, env lines, the values from the environment' => sub {
    my ($dir, $r) = convert_yaml('env', $route_yaml, '--env');
    my %vars = (CEREBRAS_ACCOUNT_1 => 'account-1', CEREBRAS_ACCOUNT_2 => 'account-2',
                NVIDIA_NVIDIA_MAIN => 'nvidia-main', OTHER_O1 => 'o1');
    for my $v (sort keys %vars) {
        like $r->{out}, qr/^env $v;$/m, "env $v; in the main context";
        like $r->{out}, qr/key  \Q$vars{$v}\E env=$v[\s;]/, "key $vars{$v} env=$v";
        like $r->{err}, qr/^  $v\s+providers\.\S+ key \Q$vars{$v}\E \(line \d+\)$/m, "stderr names $v";
    }
    unlike $r->{out}, qr/file=/, 'no file=';
    ok !-e "$dir/secrets", 'no secrets folder';
    unlike $r->{out} . $r->{err}, qr/csk-route|nvapi-route|other-route/, 'no key on stdout or stderr';

    my ($st, $out) = nginx_t($dir, "$dir/nginx.conf");
    isnt $st, 0, 'nginx -t fails without the variables';
    like $out, qr/environment variable "CEREBRAS_ACCOUNT_1" of key "account-1" is not set/, 'and says which';

    my %values = map { $_ => "from-env-$vars{$_}" } keys %vars;
    my $pidfile = nginx_start($dir, "$dir/nginx.conf", %values);
    mock_clear();
    chat('"my-model"') for 1 .. 3;
    is_deeply [ sort map { $_->{key} } @{ mock_requests() } ],
        [ sort 'from-env-account-1', 'from-env-account-2', 'from-env-nvidia-main' ],
        "the keys' values come from the environment";
    nginx_stop($pidfile);

    (my $keyless = $route_yaml) =~ s/^\s+api_key: .*\n//mg;
    spew("$dir/config.yaml", $keyless);
    my $k = run_convert([ "--env", "$dir/config.yaml" ]);
    is $k->{status}, 0, 'with --env, api_key may be left out' or diag $k->{err};
    like $k->{out}, qr/key  account-1 env=CEREBRAS_ACCOUNT_1 /, 'and the key is named all the same';
};

subtest '--fragment: what goes inside an http block' => sub {
    my $dir = "$work/fragment";
    File::Path::make_path("$dir/run", "$dir/logs");
    File::Copy::copy("$root/t/data/conductor-config.example.yaml", "$dir/config.yaml") or die $!;
    my $r = run_convert([ '--fragment', '--snippets', "$root/conf", '--access-log', "$dir/logs/usage.log",
                          '--listen', "127.0.0.1:$gw", "$dir/config.yaml" ]);
    is $r->{status}, 0, 'converted' or diag $r->{err};
    unlike $r->{out}, qr/^\s*(?:load_module|events|http|worker_processes|error_log|env)\b/m,
        'no main-context directive, no http block';
    like $r->{out}, qr/^conductor_provider cerebras \{/m, 'the providers at the top level';
    spew("$dir/conductor.conf", offline($r->{out}));
    spew("$dir/nginx.conf", <<"CONF");
load_module $module;
pid $dir/run/nginx.pid;
error_log $dir/logs/error.log;
events {}
http {
    client_body_temp_path $dir/run/body;
    proxy_temp_path $dir/run/proxy;
    include $dir/conductor.conf;
}
CONF
    my ($st, $out) = nginx_t($dir, "$dir/nginx.conf");
    is $st, 0, 'included in an http block, nginx -t passes' or diag $out;
};

# ------------------------------------------------------------ options and CONDUCTOR_*

subtest "the seed's CONDUCTOR_* variables and the options" => sub {
    my $dir = "$work/vars";
    File::Path::make_path("$dir/config");
    File::Copy::copy("$root/t/data/conductor-config.example.yaml", "$dir/config/config.yaml") or die $!;
    my @s = ('--secrets-dir', "$dir/s");

    my $r = run_convert([@s], cwd => $dir);
    is $r->{status}, 0, 'no file named: ./config/config.yaml, the seed\'s default' or diag $r->{err};
    like $r->{out}, qr/^error_log stderr info;$/m, 'INFO, the seed\'s default level: info';

    $r = run_convert([@s], env => { CONDUCTOR_CONFIG_PATH => "$dir/config/config.yaml",
                                    CONDUCTOR_HOST => '0.0.0.0', CONDUCTOR_PORT => 9123,
                                    CONDUCTOR_LOG_LEVEL => 'WARNING' });
    is $r->{status}, 0, 'CONDUCTOR_CONFIG_PATH names the file' or diag $r->{err};
    like $r->{out}, qr/^        listen 0\.0\.0\.0:9123;$/m, 'CONDUCTOR_HOST and CONDUCTOR_PORT: listen';
    like $r->{out}, qr/^error_log stderr warn;$/m, 'CONDUCTOR_LOG_LEVEL WARNING: warn';

    $r = run_convert([@s, '--listen', '127.0.0.2:81', '--log-level', 'debug', "$dir/config/config.yaml"],
                     env => { CONDUCTOR_HOST => '0.0.0.0', CONDUCTOR_PORT => 9123, CONDUCTOR_LOG_LEVEL => 'ERROR' });
    like $r->{out}, qr/^        listen 127\.0\.0\.2:81;$/m, '--listen wins over the variables';
    like $r->{out}, qr/^error_log stderr debug;$/m, '--log-level wins';

    $r = run_convert([@s, "$dir/config/config.yaml"], env => { CONDUCTOR_HOST => '::1' });
    like $r->{out}, qr/^        listen \[::1\]:8000;$/m, 'an IPv6 CONDUCTOR_HOST';

    for my $bad ([ { CONDUCTOR_PORT => 'http' }, qr/invalid listen address/ ],
                 [ { CONDUCTOR_LOG_LEVEL => 'LOUD' }, qr/invalid log level "LOUD"/ ]) {
        $r = run_convert([@s, "$dir/config/config.yaml"], env => $bad->[0]);
        is $r->{status}, 2, "bad @{[ %{ $bad->[0] } ]}: exit status 2";
        like $r->{err}, $bad->[1], 'said';
        is $r->{out}, '', 'nothing on stdout';
    }

    # an existing folder is made private; files stay 0600 under any umask
    File::Path::remove_tree("$dir/s");
    mkdir "$dir/s", 0755;
    my $old = umask 0;
    $r = run_convert([@s, "$dir/config/config.yaml"]);
    umask $old;
    is $r->{status}, 0, 'converted under umask 0';
    is mode("$dir/s"), '0700', 'a 0755 secrets folder becomes 0700';
    is mode("$dir/s/nvidia/nvidia-main"), '0600', 'files 0600 under umask 0';

    chmod 0500, "$dir/s";
    $r = run_convert(['--secrets-dir', "$dir/s/sub", "$dir/config/config.yaml"]);
    chmod 0700, "$dir/s";
    SKIP: {
        skip 'root writes anywhere', 3 if $> == 0;
        is $r->{status}, 1, 'a folder it cannot write: exit status 1';
        like $r->{err}, qr/cannot write the secrets/, 'said';
        is $r->{out}, '', 'nothing on stdout';
    }
};

# ------------------------------------------------------------ broken files

# each: YAML, the line the message must name, what it must say
my @broken = (
    [ 'unknown field', <<'YAML', 4, qr/conductor\.request_timout: unknown field \(expected scheduling_strategy, request_timeout, max_retries, retry_delay\)/ ],
conductor:
  scheduling_strategy: round_robin
  # a misspelt field
  request_timout: 120
providers: {cerebras: {keys: [{api_key: csk-1}]}}
YAML
    [ 'unknown field holding a key, whose value is never shown', <<'YAML', 6, qr/providers\.cerebras\.keys\[0\]\.api_kye: unknown field/ ],
providers:
  cerebras:
    enabled: true
    keys:
      - name: a
        api_kye: csk-LEAKED-1
YAML
    [ 'wrong type: a string for requests_per_minute', <<'YAML', 7, qr/providers\.nvidia\.keys\[0\]\.requests_per_minute: expected an integer, got a string/ ],
providers:
  nvidia:
    enabled: true
    keys:
      - name: nvidia-main
        api_key: nvapi-1
        requests_per_minute: "forty"
YAML
    [ 'wrong type: enabled', <<'YAML', 3, qr/providers\.cerebras\.enabled: expected true or false, got a string/ ],
providers:
  cerebras:
    enabled: sometimes
    keys: [{api_key: csk-1}]
YAML
    [ 'wrong type: keys', <<'YAML', 3, qr/providers\.cerebras\.keys: expected a list, got a mapping/ ],
providers:
  cerebras:
    keys: {name: a, api_key: csk-1}
YAML
    [ 'wrong type: a model name', <<'YAML', 3, qr/models\.fast\.cerebras: expected a string, got an integer/ ],
models:
  fast:
    cerebras: 8
providers: {cerebras: {keys: [{api_key: csk-1}]}}
YAML
    [ 'wrong type: request_timeout', <<'YAML', 2, qr/conductor\.request_timeout: expected a number, got a string/ ],
conductor:
  request_timeout: 2 minutes
providers: {cerebras: {keys: [{api_key: csk-1}]}}
YAML
    [ 'bad YAML syntax: an unclosed quote', <<'YAML', 7, qr/YAML syntax: while scanning a quoted scalar, found unexpected end of stream \(it began on line 6\)/ ],
providers:
  cerebras:
    keys:
      - name: a
        requests_per_minute: 30
        api_key: "csk-LEAKED-2
YAML
    [ 'bad YAML syntax: a tab', <<"YAML", 4, qr/YAML syntax: .*found character '\\t' that cannot start any token/ ],
providers:
  cerebras:
    keys:
\t- api_key: csk-LEAKED-3
YAML
    [ 'bad YAML syntax: a colon in a plain value', <<'YAML', 4, qr/YAML syntax: mapping values are not allowed here/ ],
providers:
  cerebras:
    keys:
      - api_key: csk-LEAKED-4: x
YAML
    [ 'missing required field: api_key', <<'YAML', 5, qr/providers\.cerebras\.keys\[1\]: missing required field api_key/ ],
providers:
  cerebras:
    keys:
      - {name: a, api_key: csk-1}
      - name: b
        requests_per_minute: 30
YAML
    [ 'missing required field: base_url of another provider', <<'YAML', 2, qr/providers\.groq: missing required field base_url/ ],
providers:
  groq:
    keys: [{api_key: gsk-1}]
YAML
    [ 'missing required field: providers', <<'YAML', 1, qr/missing required field providers/ ],
conductor:
  max_retries: 3
YAML
    [ 'a field given twice', <<'YAML', 4, qr/conductor\.max_retries: given twice \(first at line 2\)/ ],
conductor:
  max_retries: 3
  request_timeout: 120
  max_retries: 4
providers: {cerebras: {keys: [{api_key: csk-1}]}}
YAML
    [ 'an unknown strategy', <<'YAML', 2, qr/unknown strategy "fastest" \(expected round_robin, least_loaded, sequential\)/ ],
conductor:
  scheduling_strategy: fastest
providers: {cerebras: {keys: [{api_key: csk-1}]}}
YAML
    [ 'max_retries beyond the module', <<'YAML', 2, qr/conductor\.max_retries: at most 15/ ],
conductor:
  max_retries: 20
providers: {cerebras: {keys: [{api_key: csk-1}]}}
YAML
    [ 'a negative limit, its line inside a flow mapping', <<'YAML', 4, qr/tokens_per_minute: must be 1 or more, got -5/ ],
providers:
  cerebras:
    keys: [{api_key: csk-1,
            tokens_per_minute: -5}]
YAML
    [ 'a name nginx cannot take', <<'YAML', 4, qr/invalid key name "my key"/ ],
providers:
  cerebras:
    keys:
      - name: my key
        api_key: csk-1
YAML
    [ 'two keys of one name', <<'YAML', 5, qr/duplicate key name "a" \(first at line 4\)/ ],
providers:
  cerebras:
    keys:
      - {name: a, api_key: csk-1}
      - {name: a, api_key: csk-2}
YAML
    [ 'a base_url that is not http(s)', <<'YAML', 3, qr/base_url: expected an http:\/\/ or https:\/\/ URL, got "ftp:\/\/x"/ ],
providers:
  cerebras:
    base_url: ftp://x
    keys: [{api_key: csk-1}]
YAML
    [ 'no provider left', <<'YAML', 1, qr/no provider is enabled with a key/ ],
providers:
  cerebras:
    enabled: false
    keys: [{api_key: csk-1}]
YAML
);

for my $case (@broken) {
    my ($what, $yaml, $line, $msg) = @$case;
    subtest "refused: $what" => sub {
        my $dir = "$work/broken";
        File::Path::remove_tree($dir);
        File::Path::make_path($dir);
        spew("$dir/config.yaml", $yaml);
        my $r = run_convert(["$dir/config.yaml"]);
        is $r->{status}, 2, 'exit status 2';
        is $r->{out}, '', 'nothing on stdout';
        like $r->{err}, qr/^conductor-convert: \Q$dir\E\/config\.yaml:$line(?::\d+)?: .*$msg/m, "line $line named"
            or diag $r->{err};
        unlike $r->{err}, qr/LEAKED/, 'no key in the message';
        ok !-e "$dir/secrets", 'no secret written';
    };
}

subtest 'refused: every problem of a file at once, in line order' => sub {
    my $dir = "$work/broken";
    File::Path::make_path($dir);
    spew("$dir/config.yaml", <<'YAML');
conductor:
  max_retries: many
  retry_dly: 1
providers:
  cerebras:
    keys:
      - {name: a, api_key: csk-1, requests_per_minute: 1.5}
YAML
    my $r = run_convert(["$dir/config.yaml"]);
    is $r->{status}, 2, 'exit status 2';
    my @lines = $r->{err} =~ /config\.yaml:(\d+):/g;
    is_deeply \@lines, [2, 3, 7], 'three problems, lines 2, 3 and 7';
};

done_testing();
