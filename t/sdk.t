# The official OpenAI and Anthropic SDKs (node, t/sdk/) against the gateway:
# starts the mock provider and an nginx with the module, runs
# `node --test` on every t/sdk/*.test.mjs file, one Test::More test per file.
#
# Needs node >= 20 and t/sdk/node_modules (installed here with `npm ci` when
# missing; the file is skipped when that fails, e.g. without the registry).

use strict;
use warnings;

use FindBin ();
use POSIX ();
use lib "$FindBin::Bin/lib";

use Test::Conductor;
use Test::More;

my $env  = harness_env();
my $root = $env->{TEST_NGINX_ROOT};
my $sdk  = "$root/t/sdk";
my $log  = "$env->{TEST_NGINX_SERVROOT}/sdk";
mkdir $log;

# ---------------------------------------------------------------- node, npm

my ($node_status, $node_version) = run_logged([qw(node --version)], "$log/node-version.log", dir => $sdk);
plan skip_all => "node is not installed (the SDK tests need node >= 20)" if $node_status;
my ($major) = $node_version =~ /^v(\d+)\./;
plan skip_all => "node $node_version is too old: the SDK tests need node >= 20"
    unless $major && $major >= 20;

unless (-d "$sdk/node_modules/openai" && -d "$sdk/node_modules/\@anthropic-ai/sdk") {
    my ($st, $out) = run_logged(
        [qw(timeout 600 npm ci --no-audit --no-fund --loglevel=error)], "$log/npm-ci.log", dir => $sdk);
    if ($st) {
        my @lines = grep {/\S/} split /\n/, $out;
        my @why = grep {/\b(?:code|errno|request to|network|E[A-Z]{4,})\b/} @lines;
        @why = @lines unless @why;
        @why = @why[0 .. 2] if @why > 3;
        plan skip_all => "npm ci in t/sdk failed (exit " . ($st >> 8) . "), so the OpenAI and "
            . "Anthropic SDKs are not installed: " . join(' | ', @why) . " (full output: $log/npm-ci.log)";
    }
}

# ---------------------------------------------------------------- servers

my %conf = (
    http_config => <<'HTTP',
    conductor_zone conductor:4m;
    conductor_provider mockoai {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
        api openai;
        key k1 sdk-key-1;
    }
    conductor_provider mockant {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1;
        api anthropic;
        key a1 sdk-ant-key-1;
    }
    conductor_provider mockpriced {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
        api openai;
        key pr1 sdk-priced-key-1;
        price mock-priced-8b input=1 output=1;
    }
    conductor_model fast { mockoai mock-fast-8b; }
    conductor_model priced { mockpriced mock-priced-8b; }
    # t/sdk/clients.test.mjs: the /auth/ locations need a client key
    conductor_client sdk-team {
        key sdk-client-key-1;
        key sdk-client-key-2;
        models fast claude-fast;
    }
    conductor_client sdk-poor { key sdk-poor-key; budget 0.000001 per=day; }
    conductor_model claude-fast { mockant mock-claude-haiku; }
    # t/sdk/stream-faults.test.mjs: streams the provider breaks, on keys of
    # their own; a broken stream feeds the key's breaker, which must not open
    # during the run (every later request on that key would get a 503)
    conductor_breaker failures=1000 timeout=1s;
    conductor_provider mockfault {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/v1;
        api openai;
        key f1 sdk-fault-key-1;
    }
    conductor_provider mockantfault {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT3/v1;
        api anthropic;
        key af1 sdk-fault-ant-key-1;
    }
    conductor_model faulty { mockfault mock-faulty-8b; }
    conductor_model claude-faulty { mockantfault mock-claude-faulty; }
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<'SERVER',
        location /v1/ {
            conductor_route;
            include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
            # beside the shipped allowlist: the tests' own headers
            proxy_set_header X-Mock $http_x_mock;
            proxy_set_header X-Sdk-Test-Id $http_x_sdk_test_id;
        }
        location = /v1/models {
            conductor_models;
        }
        # t/sdk/clients.test.mjs: client keys
        location /auth/v1/ {
            conductor_auth on;
            conductor_route;
            include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
            proxy_set_header X-Mock $http_x_mock;
            proxy_set_header X-Sdk-Test-Id $http_x_sdk_test_id;
        }
        location = /auth/v1/models {
            conductor_auth on;
            conductor_models;
        }
        # t/sdk/stream-faults.test.mjs: a provider that goes idle mid-stream
        location /short/v1/ {
            conductor_route;
            include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
            # beside the shipped allowlist: the tests' own headers
            proxy_set_header X-Mock $http_x_mock;
            proxy_set_header X-Sdk-Test-Id $http_x_sdk_test_id;
            proxy_read_timeout 1s;
        }
SERVER
);
for my $text (values %conf) {
    $text =~ s/\$(TEST_NGINX_\w+)/exists $env->{$1} ? $env->{$1} : die "no placeholder $1\n"/ge;
}

start_mock();
start_nginx(%conf);

# ---------------------------------------------------------------- node --test

my %node_env = (
    CONDUCTOR_BASE_URL => "http://127.0.0.1:$env->{TEST_NGINX_PORT}",
    MOCK_CONTROL_URL   => "http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}",
    NO_COLOR           => 1,
);

my @files = sort glob "$sdk/*.test.mjs";
ok(scalar @files, 'there are SDK test files in t/sdk');

for my $file (@files) {
    (my $name = $file) =~ s{.*/}{};
    my ($st, $out) = run_logged(
        ['timeout', '300', 'node', '--test', '--test-reporter=tap', $file],
        "$log/$name.tap", dir => $sdk, env => \%node_env);
    my %count = $out =~ /^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/mg;
    my $summary = join ', ', map { "$_ " . ($count{$_} // '?') } qw(tests pass fail cancelled);
    my $ok = ok($st == 0 && ($count{tests} // 0) > 0 && !$count{fail} && !$count{cancelled},
        "node --test t/sdk/$name ($summary)");
    if ($ok) {
        note $out;
    }
    else {
        diag "node --test t/sdk/$name exited with status " . ($st >> 8)
            . ($st & 127 ? " (signal " . ($st & 127) . ")" : '') . "; its output:";
        diag $out;
    }
}

my $problems = stop_nginx();
is_deeply($problems, [], 'nginx stopped cleanly, no alert or crash in error.log')
    or diag join "\n", @$problems;

done_testing();
