# Self-test of the harness (t/lib/Test/Conductor.pm) and of the mock provider
# (t/mock/provider.js) through a plain nginx: no conductor module needed.
use lib 't/lib';
use Test::Conductor;
use MIME::Base64 ();
use Time::HiRes ();

# Plain nginx proxying to the mock, as the module's tests will through the
# gateway: HTTP/1.1 and keepalive upstream, unbuffered so streams stream.
block_defaults(
    no_module   => '',
    http_config => <<'HTTP',
    upstream mock  { server 127.0.0.1:$TEST_NGINX_MOCK_PORT;  keepalive 4; }
    upstream mock2 { server 127.0.0.1:$TEST_NGINX_MOCK_PORT2; keepalive 4; }
    upstream mock3 { server 127.0.0.1:$TEST_NGINX_MOCK_PORT3; keepalive 4; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
HTTP
    config => <<'SERVER',
        location /          { proxy_pass http://mock; }
        location /p2/       { proxy_pass http://mock2/; }
        location /p3/       { proxy_pass http://mock3/; }
        location /slow/     { proxy_pass http://mock/; proxy_read_timeout 500ms; }
        location /dead/     { proxy_pass http://127.0.0.1:$TEST_NGINX_DEAD_PORT/; }
        location = /hello   { return 200 "hello\n"; }
        location = /bare    { return 200 "bare"; }
        location = /time    { return 200 "$time_local"; }
SERVER
);

run_tests();

# ------------------------------------------------------------------ the
# hand-written API: a gated stream shows that the first event reaches the
# client while the provider still holds the rest.
{
    my $env = harness_env();
    like $env->{TEST_NGINX_PORT}, qr/^\d+$/, 'harness_env has the nginx port';
    isnt $env->{TEST_NGINX_MOCK_PORT}, $env->{TEST_NGINX_MOCK_PORT2}, 'distinct mock ports';

    start_nginx(
        no_module   => 1,
        http_config => 'proxy_http_version 1.1; proxy_buffering off;',
        config      => "location / { proxy_pass http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}; }",
    );
    mock_clear();
    my $s = http_stream_open(POST => '/v1/chat/completions',
        { Authorization => 'Bearer k;gate' },
        '{"model":"gated","stream":true,"messages":[]}');
    is $s->status, 200, 'stream: status before the body';
    like $s->header('Content-Type'), qr{text/event-stream}, 'stream: content type';
    ok $s->read_until(qr/"role":"assistant"/, 5), 'first event arrives while the rest is held';
    unlike $s->body, qr/\[DONE\]/, 'the rest has not arrived';
    ok !defined $s->read_some(0.3) && $s->timed_out, 'nothing more until the release';
    is scalar @{ mock_requests() }, 1, 'mock saw the request';
    is mock_release(), 1, 'one gated stream released';
    like $s->read_all(5), qr/data: \[DONE\]\n\n\z/, 'the rest arrives after the release';
    ok $s->complete, 'chunked body complete';
    my @events = @{ parse_sse($s->body) };
    is join('', map { $_->{json} ? $_->{json}{choices}[0]{delta}{content} // '' : '' } @events),
        'Hello from gated', 'content reassembled';

    my $direct = http_request(GET => '/v1/models', {}, undef, port => $env->{TEST_NGINX_MOCK_PORT2});
    is $direct->{headers}{'x-mock-port'}, $env->{TEST_NGINX_MOCK_PORT2}, 'http_request to another port';
    like error_log_since_start(), qr/\[debug\]|\[notice\]/, 'error_log_since_start reads this nginx';
    is_deeply stop_nginx(), [], 'nginx stopped cleanly';
}

# ------------------------------------------------------------------ waits:
# http_request returns once nginx has logged the request (a request with a
# body is logged only after a lingering close, when the client has closed
# too); wait_for, status_report and status_wait; a request nginx does not log
# costs one bounded wait, said in a diag, then none.
{
    start_nginx(no_module => 1, config => <<'SERVER');
        location = /204      { return 204; }
        location = /json     { default_type application/json; return 200 '{"n":$arg_n}'; }
        location = /unlogged { access_log off; return 204; }
SERVER
    my $log = "$ENV{TEST_NGINX_SERVROOT}/logs/access.log";
    my $slurp = sub { open my $fh, '<', $log or return ''; local $/; <$fh> // '' };
    my @missing;
    for my $i (1 .. 30) {
        http_request(POST => "/204?i=$i", {}, 'x' x 100);
        push @missing, $i unless $slurp->() =~ m{^127\.0\.0\.1:\d+ - - \[[^\]]+\] "POST /204\?i=$i HTTP/1\.1" 204 }m;
    }
    is "@missing", '', 'each request is in the access log (address:port first) when http_request returns';

    my @diags;
    no warnings 'redefine';
    local *Test::More::diag = sub { push @diags, join '', @_ };
    my $n = 0;
    is wait_for(sub { ++$n >= 3 && "v$n" }, interval => 0.01), 'v3', 'wait_for: the first true value';
    {
        local $Test::Conductor::WAIT_SECONDS = 0.2;
        my $t0 = Time::HiRes::time();
        ok !wait_for(sub { 0 }, what => 'nothing'), 'wait_for: false at the timeout';
        cmp_ok Time::HiRes::time() - $t0, '>=', 0.2, '... after the timeout';
        like "@diags", qr/^gave up after [\d.]+ s waiting for nothing$/, '... said in a diag';
    }
    is_deeply status_report(path => '/json?n=2'), { n => 2 }, 'status_report: the decoded answer';
    is status_report(path => '/204'), undef, 'status_report: undef for an answer without JSON';
    my $calls = 0;
    is_deeply status_wait(sub { ++$calls == 2 && $_->{n} == 3 && $_[0]{n} == 3 }, path => '/json?n=3'), { n => 3 },
        'status_wait: the report once the condition holds for $_ and $_[0]';
    {
        local $Test::Conductor::WAIT_SECONDS = 0.2;
        @diags = ();
        is_deeply status_wait(sub { $_->{n} == 5 }, path => '/json?n=4', what => 'n=5'), { n => 4 },
            'status_wait: the last report at the timeout';
        like "@diags", qr/waiting for n=5/, '... and a diag';
    }

    local $Test::Conductor::WAIT_SECONDS = 0.3;
    @diags = ();
    my $t0 = Time::HiRes::time();
    is http_request(GET => '/unlogged')->{status}, 204, 'a request nginx does not log';
    cmp_ok Time::HiRes::time() - $t0, '>=', 0.3, '... waits for its line until the timeout';
    like "@diags", qr{no logs/access\.log line for GET /unlogged}, '... says so';
    $t0 = Time::HiRes::time();
    http_request(GET => '/unlogged') for 1 .. 3;
    cmp_ok Time::HiRes::time() - $t0, '<', 0.3, '... and waits no more for this nginx';
    is scalar(@diags), 1, '... saying it once';
    is_deeply stop_nginx(), [], 'nginx stopped cleanly';
}

# ------------------------------------------------------------------ crash
# detection: a process killed by SIGSEGV must show up as a problem.
{
    start_nginx(no_module => 1, config => 'location / { return 204; }');
    my $master = nginx_pid();
    my @victims = $ENV{TEST_NGINX_USE_VALGRIND}
        ? ($master)    # one process, nginx itself under valgrind
        : (`ps --ppid $master -o pid=` =~ /(\d+)/g);
    ok @victims, 'found the process to crash';
    kill 'SEGV', @victims;
    Time::HiRes::sleep($ENV{TEST_NGINX_USE_VALGRIND} ? 3 : 0.5);
    my $problems = stop_nginx();
    like join("\n", @$problems), qr/exited on signal 11|exited \(status \d+\) before the end|signal 11 after QUIT/,
        'the crash is reported';
}

# ------------------------------------------------------------------ the
# valgrind log reader, on a made-up log: memory errors anywhere count; a
# definite leak counts when a frame is ours.
{
    my $log = "$ENV{TEST_NGINX_SERVROOT}/logs/valgrind.log";
    my $write = sub { open my $fh, '>', $log or die "$log: $!"; print {$fh} @_; close $fh };
    my $clean = "==1== Memcheck\n==1== \n==1== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 1 from 1)\n";
    $write->($clean);
    is_deeply [ Test::Conductor::_valgrind_problems(0) ], [], 'valgrind: clean log';
    $write->("==1== Memcheck\n==1== \n==1== Invalid read of size 4\n==1==    at 0x1: ngx_http_conductor_x (a.c:1)\n"
        . "==1==    by 0x2: main\n==1== \n==1== ERROR SUMMARY: 1 errors from 1 contexts (suppressed: 0 from 0)\n");
    my @p = Test::Conductor::_valgrind_problems(97 << 8);
    like "@p", qr/ERROR SUMMARY: 1 errors.*Invalid read of size 4/s, 'valgrind: error with its stack';
    $write->("==1== \n==1== 16 bytes in 1 blocks are definitely lost in loss record 2 of 5\n"
        . "==1==    at 0x1: malloc\n==1==    by 0x2: ngx_http_conductor_conf (c.c:9)\n==1== \n"
        . "==1== ERROR SUMMARY: 0 errors from 0 contexts (suppressed: 0 from 0)\n");
    like join('', Test::Conductor::_valgrind_problems(0)), qr/conductor memory definitely lost.*ngx_http_conductor_conf/s,
        'valgrind: our definite leak';
    $write->("==1== Memcheck\n");
    like join('', Test::Conductor::_valgrind_problems(9)), qr/no ERROR SUMMARY/, 'valgrind: truncated log';
    unlink $log;
}

done_testing();

__DATA__

=== TEST 1: chat completion, non-stream
--- request
POST /v1/chat/completions
{"model":"llama3.1-8b","messages":[{"role":"user","content":"hi"}]}
--- more_headers
Authorization: Bearer test-key-1
X-Extra: one
--- error_code: 200
--- response_headers
Content-Type: application/json
X-Mock-Key: test-key-1
X-Mock-Model: llama3.1-8b
X-Mock-Port: $TEST_NGINX_MOCK_PORT
!X-Absent
--- response_body_like: "object":"chat.completion"
--- checks
my $u = $resp->{json}{usage};
is $resp->{json}{choices}[0]{message}{content}, 'Hello from llama3.1-8b', 'content names the model';
is_deeply [ @$u{qw(prompt_tokens completion_tokens total_tokens)} ], [12, 5, 17], 'default usage';
is $u->{prompt_tokens_details}{cached_tokens}, 0, 'cached_tokens present';
is $u->{completion_tokens_details}{reasoning_tokens}, 0, 'reasoning_tokens present';
is scalar @$mock, 1, 'one request reached the mock';
is $mock->[0]{json}{model}, 'llama3.1-8b', 'model as sent';
is $mock->[0]{key}, 'test-key-1', 'key recorded';
is $mock->[0]{headers}{'x-extra'}, 'one', 'headers recorded lower-case';
is $mock->[0]{port}, $env->{TEST_NGINX_MOCK_PORT}, 'port recorded';
is $mock->[0]{method}, 'POST', 'method recorded';
--- no_error_log
[error]
[warn]



=== TEST 2: chat stream cut into 7-byte pieces, usage asked for
--- request
POST /v1/chat/completions
{"model":"m1","stream":true,"stream_options":{"include_usage":true},"messages":[]}
--- more_headers
Authorization: Bearer k;chunk=7;completion_tokens=4;cached_tokens=2;reasoning_tokens=1
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
Transfer-Encoding: chunked
!Content-Length
--- checks
my @ev = @{ $resp->{sse} };
is $ev[-1]{data}, '[DONE]', 'ends with [DONE]';
my @chunks = map { $_->{json} } @ev[0 .. $#ev - 1];
is $chunks[0]{choices}[0]{delta}{role}, 'assistant', 'role chunk first';
is scalar(grep { exists $_->{usage} && !defined $_->{usage} } @chunks), @chunks - 1, 'usage:null on every other chunk';
my $last = $chunks[-1];
is_deeply $last->{choices}, [], 'usage chunk has no choices';
is $last->{usage}{completion_tokens}, 4, 'completion tokens';
is $last->{usage}{prompt_tokens_details}{cached_tokens}, 2, 'cached tokens';
is $last->{usage}{completion_tokens_details}{reasoning_tokens}, 1, 'reasoning tokens';
is scalar(grep { defined $_->{choices}[0]{delta}{content} && $_->{choices}[0]{delta}{content} ne '' } @chunks), 4, 'one content chunk per token';
is join('', map { $_->{choices}[0] ? $_->{choices}[0]{delta}{content} // '' : '' } @chunks), 'Hello from m1', 'content';
is $chunks[-2]{choices}[0]{finish_reason}, 'stop', 'finish chunk before the usage chunk';
ok $resp->{complete}, 'chunked body complete';



=== TEST 3: chat stream without include_usage carries no usage at all
--- request
POST /v1/chat/completions
{"model":"m2","stream":true,"messages":[]}
--- error_code: 200
--- checks
my @json = map { $_->{json} || () } @{ $resp->{sse} };
ok !(grep { exists $_->{usage} } @json), 'no usage key anywhere';
is $json[-1]{choices}[0]{finish_reason}, 'stop', 'finish chunk is the last one';
like $resp->{body}, qr/data: \[DONE\]\n\n\z/, '[DONE] ends the stream';



=== TEST 4: usage=every_chunk (x-mock header) and usage=on_finish (model)
--- request_eval
[ qq{POST /v1/chat/completions\n{"model":"m","stream":true,"messages":[]}},
  qq{POST /v1/chat/completions\n{"model":"m;usage=on_finish;completion_tokens=3","stream":true,"messages":[]}} ]
--- more_headers
Authorization: Bearer plain-key
--- error_code: 200
--- checks
my ($every, $finish) = map { [ map { $_->{json} || () } @{ $_->{sse} } ] } @$resps;
is $finish->[-1]{usage}{completion_tokens}, 3, 'on_finish: usage on the finish chunk';
ok $finish->[-1]{time_info}, 'on_finish: time_info (Cerebras)';
is scalar @{ $finish->[-1]{choices} }, 1, 'on_finish: that chunk still has choices';
ok !(grep { exists $_->{usage} } @$finish[0 .. $#$finish - 1]), 'on_finish: no usage before';
my $r = http_request(POST => '/v1/chat/completions', { 'X-Mock' => 'usage=every_chunk' },
    '{"model":"m","stream":true,"messages":[]}');
my @c = map { $_->{json} || () } @{ $r->{sse} };
is_deeply [ map { $_->{usage}{completion_tokens} } @c ], [0, 1, 2, 3, 4, 5, 5], 'every_chunk: running totals';



=== TEST 5: legacy completions, plain and streamed with usage
--- request_eval
[ qq{POST /v1/completions\n{"model":"legacy","prompt":"x"}},
  qq{POST /openai/v1/completions\n{"model":"legacy","prompt":"x","stream":true,"stream_options":{"include_usage":true}}} ]
--- error_code: 200
--- checks
my ($plain, $stream) = @$resps;
is $plain->{json}{object}, 'text_completion', 'object';
is $plain->{json}{choices}[0]{text}, 'Hello from legacy', 'text';
is $plain->{json}{usage}{total_tokens}, 17, 'usage';
my @c = map { $_->{json} || () } @{ $stream->{sse} };
is join('', map { $_->{choices}[0] ? $_->{choices}[0]{text} : '' } @c), 'Hello from legacy', 'streamed text';
is $c[-1]{usage}{completion_tokens}, 5, 'usage chunk';
is $mock->[1]{url}, '/openai/v1/completions', 'prefix kept';



=== TEST 6: embeddings, float arrays and base64 float32
--- request_eval
[ qq{POST /v1/embeddings\n{"model":"emb","input":["a","b"],"encoding_format":"float","dimensions":4}},
  qq{POST /v1/embeddings\n{"model":"emb","input":["a","b"],"encoding_format":"base64","dimensions":4}} ]
--- more_headers
Authorization: Bearer k;prompt_tokens=3
--- error_code: 200
--- checks
my ($float, $b64) = map { $_->{json} } @$resps;
is scalar @{ $float->{data} }, 2, 'one embedding per input';
is scalar @{ $float->{data}[1]{embedding} }, 4, 'dimensions honoured';
my @decoded = unpack 'f<*', MIME::Base64::decode_base64($b64->{data}[1]{embedding});
is_deeply \@decoded, $float->{data}[1]{embedding}, 'base64 is the same float32 vector';
is_deeply $float->{usage}, { prompt_tokens => 3, total_tokens => 3 }, 'usage';



=== TEST 7: responses, non-stream: the tool item's nested usage is a decoy
--- request
POST /v1/responses
{"model":"rm","input":"hi"}
--- more_headers
Authorization: Bearer k;prompt_tokens=100;completion_tokens=7;cached_tokens=40
--- error_code: 200
--- response_body_like: ^\{"id":"resp_mock
--- checks
my $j = $resp->{json};
is $j->{object}, 'response', 'object';
is $j->{output}[0]{usage}{input_tokens}, 901, 'nested tool usage is there';
is_deeply [ @{ $j->{usage} }{qw(input_tokens output_tokens total_tokens)} ], [100, 7, 107], 'response usage';
is $j->{usage}{input_tokens_details}{cached_tokens}, 40, 'cached';
is $j->{output}[1]{content}[0]{text}, 'Hello from rm', 'text';
ok index($resp->{body}, '"usage":{"input_tokens":901') < index($resp->{body}, '"usage":{"input_tokens":100'), 'decoy comes first';



=== TEST 8: responses stream, random splits, 64 KB completed event, no [DONE]
--- request
POST /v1/responses
{"model":"rs;chunk=random;chunk_delay=0;big=64","input":"hi","stream":true}
--- error_code: 200
--- checks
my @ev = @{ $resp->{sse} };
is $ev[0]{event}, 'response.created', 'created first';
is $ev[-1]{event}, 'response.completed', 'completed last';
is_deeply [ map { $_->{json}{sequence_number} } @ev ], [ 0 .. $#ev ], 'sequence numbers';
ok !(grep { $_->{event} ne $_->{json}{type} } @ev), 'event names match types';
ok !($resp->{body} =~ /\[DONE\]/), 'no [DONE]';
ok length($ev[-1]{data}) > 64 * 1024, 'completed event line is over 64 KB';
is $ev[-1]{json}{response}{usage}{total_tokens}, 17, 'usage in response.completed';
like $ev[-1]{data}, qr/"mock_padding":"x+","usage":\{/, 'padding sits before usage';
is join('', map { $_->{json}{delta} } grep { $_->{event} eq 'response.output_text.delta' } @ev),
    'Hello from rs;chunk=random;chunk_delay=0;big=64', 'deltas';
ok !defined $ev[0]{json}{response}{usage}, 'created has usage null';



=== TEST 9: anthropic messages, non-stream
--- request
POST /v1/messages
{"model":"claude-x","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}
--- more_headers
x-api-key: ak;cached_tokens=7;cache_creation=3
anthropic-version: 2023-06-01
--- error_code: 200
--- response_headers
X-Mock-Key: ak;cached_tokens=7;cache_creation=3
--- checks
my $j = $resp->{json};
is $j->{type}, 'message', 'type';
is $j->{content}[0]{text}, 'Hello from claude-x', 'text';
is_deeply [ @{ $j->{usage} }{qw(input_tokens output_tokens cache_read_input_tokens cache_creation_input_tokens)} ],
    [12, 5, 7, 3], 'usage';
is $mock->[0]{key}, 'ak;cached_tokens=7;cache_creation=3', 'x-api-key is the key';



=== TEST 10: anthropic stream with CRLF, no space after colons, comments
--- request
POST /v1/messages
{"model":"claude-y","max_tokens":10,"stream":true,"messages":[]}
--- more_headers
x-api-key: ak
X-Mock: crlf;nospace;comments;completion_tokens=3
--- error_code: 200
--- response_body_like: ^event:message_start\r\ndata:\{
--- checks
my @ev = @{ $resp->{sse} };
is_deeply [ map { $_->{event} } @ev ],
    [qw(message_start ping content_block_start content_block_delta content_block_delta content_block_delta
        content_block_stop message_delta message_stop)], 'event order';
is $ev[0]{json}{message}{usage}{output_tokens}, 1, 'message_start output_tokens 1';
is $ev[-2]{json}{usage}{output_tokens}, 3, 'message_delta cumulative output';
like $resp->{body}, qr/\r\n:keep-alive\r\n\r\n/, 'comment lines';
unlike $resp->{body}, qr/(?<!\r)\n/, 'only CRLF line ends';



=== TEST 11: models, OpenAI and Anthropic shape
--- request_eval
[ "GET /v1/models", { method => 'GET', uri => '/v1/models', headers => { 'anthropic-version' => '2023-06-01' } } ]
--- error_code: 200
--- checks
is $resps->[0]{json}{object}, 'list', 'openai list';
is $resps->[0]{json}{data}[0]{object}, 'model', 'openai model';
is $resps->[1]{json}{data}[0]{type}, 'model', 'anthropic model';
ok exists $resps->[1]{json}{has_more}, 'anthropic has_more';



=== TEST 12: unknown endpoint: 404 in the OpenAI dialect; status=404 on /messages: Anthropic dialect
--- request_eval
[ "GET /v1/nothing", qq{POST /v1/messages\n{"model":"c;status=404"}} ]
--- error_code: 404
--- checks
is $resps->[0]{status}, 404, 'unknown path';
is $resps->[0]{json}{error}{type}, 'invalid_request_error', 'openai error shape';
is $resps->[1]{json}{type}, 'error', 'anthropic error shape';
is $resps->[1]{json}{error}{type}, 'not_found_error', 'anthropic error type';



=== TEST 13: status=429 with rate-limit headers, per key
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer k429;status=429;retry_after=3;retry_after_ms=2500;reset_requests=6m0s;reset_tokens=1s;remaining_requests=0;remaining_tokens=10;limit_requests=30;limit_tokens=6000
--- error_code: 429
--- response_headers
Retry-After: 3
retry-after-ms: 2500
x-ratelimit-reset-requests: 6m0s
x-ratelimit-reset-tokens: 1s
x-ratelimit-remaining-requests: 0
x-ratelimit-remaining-tokens: 10
x-ratelimit-limit-requests: 30
x-ratelimit-limit-tokens: 6000
Content-Type: application/json
--- response_body_like: "code":"rate_limit_exceeded"
--- error_log
127.0.0.1
--- no_error_log
[error]



=== TEST 14: rate-limit headers on a successful answer, anthropic reset times
--- request
POST /v1/messages
{"model":"c","max_tokens":5,"messages":[]}
--- more_headers
x-api-key: k;an_reset=60;remaining_requests=99
--- error_code: 200
--- response_headers
x-ratelimit-remaining-requests: 99
--- response_headers_like
anthropic-ratelimit-requests-reset: ^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$
anthropic-ratelimit-tokens-reset: Z$
X-Mock-Port: ^\d+$



=== TEST 15: reset: the connection dies before any answer
--- request
POST /v1/chat/completions
{"model":"m;reset","messages":[]}
--- error_code: 502
--- error_log
upstream prematurely closed connection while reading response header from upstream
--- checks
is scalar @$mock, 1, 'the request was recorded before the reset';



=== TEST 16: reset_mid: a stream cut in the middle reaches the client truncated
--- request
POST /v1/chat/completions
{"model":"m;reset_mid","stream":true,"messages":[]}
--- error_code: 200
--- error_log eval
qr/upstream prematurely closed connection while (?:reading upstream|sending to client)|recv\(\) failed \(104: Connection reset by peer\)/
--- checks
ok !$resp->{complete}, 'body is not complete';
like $resp->{body}, qr/"role":"assistant"/, 'first events arrived';
unlike $resp->{body}, qr/\[DONE\]/, 'no end';



=== TEST 17: fail_first=2: two failures, then the normal answer
--- request_eval
[ map { qq{POST /v1/chat/completions\n{"model":"m","messages":[]}} } 1 .. 3 ]
--- more_headers
Authorization: Bearer kf;status=503;fail_first=2
--- error_code: 200
--- checks
is_deeply [ map { $_->{status} } @$resps ], [503, 503, 200], 'statuses';
is scalar @$mock, 3, 'three requests recorded';



=== TEST 18: fail_first counters restart with each block
--- request
POST /v1/chat/completions
{"model":"m","messages":[]}
--- more_headers
Authorization: Bearer kf;status=503;fail_first=2
--- error_code: 503



=== TEST 19: ttfb beyond proxy_read_timeout: 504
--- request
POST /slow/v1/chat/completions
{"model":"m;ttfb=1500","messages":[]}
--- error_code: 504
--- error_log eval
[ qr/upstream timed out \(110: Connection timed out\) while reading response header/, 'slow/v1/chat' ]



=== TEST 20: ttfb delays the answer; three mock ports, one process
--- request_eval
[ qq{POST /p2/v1/chat/completions\n{"model":"m;ttfb=300","messages":[]}},
  qq{POST /p3/v1/chat/completions\n{"model":"m","messages":[]}} ]
--- error_code: 200
--- checks
cmp_ok $resps->[0]{elapsed}, '>=', 0.3, 'first byte after 300 ms';
is $resps->[0]{headers}{'x-mock-port'}, $env->{TEST_NGINX_MOCK_PORT2}, 'port 2';
is $resps->[1]{headers}{'x-mock-port'}, $env->{TEST_NGINX_MOCK_PORT3}, 'port 3';
is_deeply [ map { $_->{port} } @$mock ], [ @$env{qw(TEST_NGINX_MOCK_PORT2 TEST_NGINX_MOCK_PORT3)} ], 'one log for all ports';



=== TEST 21: token precedence: model < key < x-mock header
--- request_eval
[ { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"m;prompt_tokens=1","messages":[]}' },
  { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"m;prompt_tokens=1","messages":[]}',
    headers => { Authorization => 'Bearer k;prompt_tokens=2' } },
  { method => 'POST', uri => '/v1/chat/completions', body => '{"model":"m;prompt_tokens=1","messages":[]}',
    headers => { Authorization => 'Bearer k;prompt_tokens=2', 'X-Mock' => 'prompt_tokens=3;bogus=1;nonsense' } } ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{json}{usage}{prompt_tokens} } @$resps ], [1, 2, 3], 'later sources win';



=== TEST 22: nothing listens on the dead port
--- request
GET /dead/x
--- error_code: 502
--- error_log
Connection refused



=== TEST 23: exact body, keep-alive framing by Content-Length
--- request
GET /hello
--- more_headers
Connection: keep-alive
--- error_code: 200
--- response_body
hello
--- response_headers
Content-Length: 6
--- timeout: 5



=== TEST 24: env reaches nginx (TZ shows in $time_local); main_config overrides worker_processes
--- main_config
worker_processes 2;
--- env
TZ=XYZ-14
--- request
GET /time
--- error_code: 200
--- response_body_like: \+1400$
--- checks
my $conf = do { local (@ARGV, $/) = "$env->{TEST_NGINX_SERVROOT}/conf/nginx.conf"; <> };
is scalar(() = $conf =~ /^\s*worker_processes\b/mg), 1, 'one worker_processes line';
like $conf, qr/^worker_processes 2;/m, 'the block\'s value';
my $r = http_request(GET => '/bare');
is $r->{body}, 'bare', 'http_request inside checks reaches this nginx';
--- wait: 0.1



=== TEST 25: response_body with the chomp filter
--- request
GET /bare
--- response_body chomp
bare



=== TEST 26: must_die: nginx -t refuses an unknown directive
--- config
location / { frobnicate on; }
--- must_die
--- error_log
unknown directive "frobnicate"
--- no_error_log
[alert]
