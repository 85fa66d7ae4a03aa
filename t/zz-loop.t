use lib 't/lib';
use Test::Conductor;
block_defaults(no_module => '', http_config => "upstream mock { server 127.0.0.1:\$TEST_NGINX_MOCK_PORT; keepalive 4; }\nproxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off;", config => 'location / { proxy_pass http://mock; }');
run_tests();
__DATA__
=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

=== TEST 16: x
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- checks
my @l = grep { /\[(error|warn|crit|info)\]/ } split /\n/, Test::Conductor::error_log_since_start(); diag "@l";

