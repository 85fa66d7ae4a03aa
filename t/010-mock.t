# conductor_mock: the embedded mock provider answers every endpoint in the
# JSON and SSE shapes the official SDKs parse, with the reply
# "Hello from <model>! I am the conductor mock provider." and usage
# prompt = max(1, body bytes / 4), completion = words of the reply.
use lib 't/lib';
use Test::Conductor;
use MIME::Base64 ();
use Time::HiRes ();

my $REPLY = ' I am the conductor mock provider.';

# the body the block sent, as the harness sends it
sub body_of {
    my ($block) = @_;
    (my $text = $block->{request}[0]) =~ s/\A\s*\n//;
    my (undef, $body) = split /\n/, $text, 2;
    $body //= '';
    $body =~ s/\n\z//;
    return $body;
}

sub prompt_of { my $n = int(length(body_of($_[0])) / 4); return $n || 1 }

sub reply_for { return "Hello from $_[0]!$REPLY" }

# the JSON events of a stream, [DONE] left out
sub events_of { return [ map { $_->{json} || () } @{ $_[0]{sse} || [] } ] }

block_defaults(
    config           => 'location / { conductor_mock; }',
    response_headers => "X-Conductor-Mock: 1\nContent-Type: application/json",
    no_error_log     => "[error]\n[warn]",
);

run_tests();

__DATA__

=== TEST 1: chat completion, JSON
--- request
POST /v1/chat/completions
{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there"}]}
--- error_code: 200
--- response_headers_like
Content-Length: ^\d+$
--- checks
my $j = $resp->{json};
is $j->{object}, 'chat.completion', 'object';
like $j->{id}, qr/^chatcmpl-/, 'id';
like $j->{created}, qr/^\d+$/, 'created';
is $j->{model}, 'gpt-4o-mini', 'model echoed';
is $j->{choices}[0]{index}, 0, 'index';
is $j->{choices}[0]{message}{role}, 'assistant', 'role';
is $j->{choices}[0]{message}{content}, reply_for('gpt-4o-mini'), 'content';
ok exists $j->{choices}[0]{logprobs} && !defined $j->{choices}[0]{logprobs}, 'logprobs null';
is $j->{choices}[0]{finish_reason}, 'stop', 'finish_reason';
my $p = prompt_of($block);
is_deeply $j->{usage}, { prompt_tokens => $p, completion_tokens => 9, total_tokens => $p + 9 }, 'usage';
is length $resp->{body}, $resp->{headers}{'content-length'}, 'Content-Length is the body length';



=== TEST 2: the model is decoded and escaped again; none given: mock-model
--- request_eval
[ qq{POST /v1/chat/completions\n{"model":"a \\"q\\" \\\\ \\u00e9\\n\\u0000x","messages":[]}},
  qq{POST /v1/chat/completions\n{"messages":[]}} ]
--- error_code: 200
--- checks
my ($odd, $none) = map { $_->{json} } @$resps;
my $model = "a \"q\" \\ \x{e9}\n\x{0}x";
is $odd->{model}, $model, 'model decoded and re-escaped';
is $odd->{choices}[0]{message}{content}, reply_for($model), 'content';
is $odd->{usage}{completion_tokens}, 12, 'words split on spaces';
is $none->{model}, 'mock-model', 'default model';
is $none->{choices}[0]{message}{content}, reply_for('mock-model'), 'default content';



=== TEST 3: chat stream without include_usage
--- request
POST /v1/chat/completions
{"model":"m1","stream":true,"messages":[]}
--- error_code: 200
--- response_headers
X-Conductor-Mock: 1
Content-Type: text/event-stream
Cache-Control: no-cache
Transfer-Encoding: chunked
!Content-Length
--- checks
my @ev = @{ $resp->{sse} };
is $ev[-1]{data}, '[DONE]', '[DONE] last';
like $resp->{body}, qr/\Adata: \{.*data: \[DONE\]\n\n\z/s, 'data: lines';
my $c = events_of($resp);
is scalar @$c, 11, 'role chunk, 9 words, finish chunk';
ok !(grep { $_->{object} ne 'chat.completion.chunk' || $_->{model} ne 'm1' } @$c), 'object and model on every chunk';
is_deeply $c->[0]{choices}[0]{delta}, { role => 'assistant', content => '' }, 'role chunk';
is_deeply [ map { $_->{choices}[0]{delta}{content} } @$c[1 .. 9] ],
    [ 'Hello ', 'from ', 'm1! ', 'I ', 'am ', 'the ', 'conductor ', 'mock ', 'provider.' ], 'one chunk per word';
ok !(grep { defined $_->{choices}[0]{finish_reason} } @$c[0 .. 9]), 'finish_reason null before the end';
is $c->[10]{choices}[0]{finish_reason}, 'stop', 'finish chunk';
is_deeply $c->[10]{choices}[0]{delta}, {}, 'finish chunk has an empty delta';
ok !(grep { exists $_->{usage} } @$c), 'no usage key anywhere';
ok $resp->{complete}, 'chunked body complete';



=== TEST 4: chat stream with include_usage: usage null on every chunk, then the usage chunk
--- request
POST /v1/chat/completions
{"model":"m2","stream":true,"stream_options":{"include_usage":true},"messages":[]}
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
--- checks
my $c = events_of($resp);
is scalar @$c, 12, 'role, 9 words, finish, usage';
ok !(grep { !exists $_->{usage} || defined $_->{usage} } @$c[0 .. 10]), '"usage":null on the others';
is $c->[10]{choices}[0]{finish_reason}, 'stop', 'finish chunk before the usage chunk';
is_deeply $c->[11]{choices}, [], 'usage chunk has no choices';
my $p = prompt_of($block);
is_deeply $c->[11]{usage}, { prompt_tokens => $p, completion_tokens => 9, total_tokens => $p + 9 }, 'usage';
is $resp->{sse}[-1]{data}, '[DONE]', '[DONE] after it';



=== TEST 5: include_usage false asks for nothing
--- request
POST /v1/chat/completions
{"model":"m3","stream":true,"stream_options":{"include_usage":false}}
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
--- checks
my $c = events_of($resp);
is scalar @$c, 11, 'no usage chunk';
ok !(grep { exists $_->{usage} } @$c), 'no usage key';



=== TEST 6: legacy completions, JSON
--- request
POST /v1/completions
{"model":"davinci","prompt":"Say hi"}
--- error_code: 200
--- checks
my $j = $resp->{json};
is $j->{object}, 'text_completion', 'object';
like $j->{id}, qr/^cmpl-/, 'id';
is $j->{choices}[0]{text}, reply_for('davinci'), 'text';
is $j->{choices}[0]{finish_reason}, 'stop', 'finish_reason';
my $p = prompt_of($block);
is_deeply $j->{usage}, { prompt_tokens => $p, completion_tokens => 9, total_tokens => $p + 9 }, 'usage';



=== TEST 7: legacy completions, stream with usage
--- request
POST /v1/completions
{"model":"davinci","prompt":"Say hi","stream":true,"stream_options":{"include_usage":true}}
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
--- checks
my $c = events_of($resp);
is scalar @$c, 11, '9 words, finish, usage';
ok !(grep { $_->{object} ne 'text_completion' } @$c), 'object';
is join('', map { $_->{choices}[0] ? $_->{choices}[0]{text} : '' } @$c), reply_for('davinci'), 'text';
is $c->[9]{choices}[0]{finish_reason}, 'stop', 'finish chunk';
ok !(grep { defined $_->{usage} } @$c[0 .. 9]), 'usage null before';
is_deeply $c->[10]{choices}, [], 'usage chunk';
is $c->[10]{usage}{completion_tokens}, 9, 'completion tokens';
is $resp->{sse}[-1]{data}, '[DONE]', '[DONE]';



=== TEST 8: embeddings, floats
--- request
POST /v1/embeddings
{"model":"text-embedding-3-small","input":"hello"}
--- error_code: 200
--- checks
my $j = $resp->{json};
is $j->{object}, 'list', 'object';
is $j->{model}, 'text-embedding-3-small', 'model';
is_deeply [ @{ $j->{data}[0] }{qw(object index)} ], [ 'embedding', 0 ], 'data[0]';
is_deeply $j->{data}[0]{embedding}, [ 0.1, 0.2, 0.3 ], 'floats';
my $p = prompt_of($block);
is_deeply $j->{usage}, { prompt_tokens => $p, total_tokens => $p }, 'usage';



=== TEST 9: embeddings, base64 float32 (what the openai SDK asks for)
--- request
POST /v1/embeddings
{"model":"e","input":["hello"],"encoding_format":"base64","stream":true}
--- error_code: 200
--- checks
my $b64 = $resp->{json}{data}[0]{embedding};
ok !ref $b64, 'a string';
my @v = unpack 'f<*', MIME::Base64::decode_base64($b64);
is scalar @v, 3, 'three float32 values';
ok abs($v[$_] - (0.1, 0.2, 0.3)[$_]) < 1e-6, "value $_" for 0 .. 2;



=== TEST 10: responses API, JSON
--- request
POST /v1/responses
{"model":"gpt-4.1","input":"hi"}
--- error_code: 200
--- checks
my $j = $resp->{json};
is_deeply [ @$j{qw(id object status model)} ], [ 'resp_mock', 'response', 'completed', 'gpt-4.1' ], 'response';
like $j->{created_at}, qr/^\d+$/, 'created_at';
my $item = $j->{output}[0];
is_deeply [ @$item{qw(type id status role)} ], [ 'message', 'msg_mock', 'completed', 'assistant' ], 'message item';
is_deeply $item->{content}, [ { type => 'output_text', text => reply_for('gpt-4.1'), annotations => [] } ], 'output_text';
my $p = prompt_of($block);
is_deeply $j->{usage}, { input_tokens => $p, input_tokens_details => { cached_tokens => 0 },
    output_tokens => 9, output_tokens_details => { reasoning_tokens => 0 }, total_tokens => $p + 9 }, 'usage';



=== TEST 11: responses API, stream
--- request
POST /v1/responses
{"model":"gpt-4.1","input":"hi","stream":true}
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
Cache-Control: no-cache
--- checks
my @ev = @{ $resp->{sse} };
ok !(grep { !$_->{json} } @ev), 'every event is JSON: no [DONE]';
ok !(grep { $_->{event} ne $_->{json}{type} } @ev), 'event: line is the type';
is_deeply [ map { $_->{json}{sequence_number} } @ev ], [ 0 .. $#ev ], 'sequence numbers';
is $ev[0]{event}, 'response.created', 'created first';
is $ev[0]{json}{response}{status}, 'in_progress', 'in progress';
is_deeply $ev[0]{json}{response}{output}, [], 'empty output';
my @d = grep { $_->{event} eq 'response.output_text.delta' } @ev;
is scalar @d, 9, 'a delta per word';
ok !(grep { $_->{json}{item_id} ne 'msg_mock' || $_->{json}{output_index} != 0 || $_->{json}{content_index} != 0 } @d), 'delta indexes';
is join('', map { $_->{json}{delta} } @d), reply_for('gpt-4.1'), 'deltas';
is $ev[-1]{event}, 'response.completed', 'completed last';
my $r = $ev[-1]{json}{response};
is $r->{status}, 'completed', 'status';
is $r->{output}[0]{content}[0]{text}, reply_for('gpt-4.1'), 'full text';
is $r->{usage}{input_tokens}, prompt_of($block), 'input tokens';
is $r->{usage}{output_tokens}, 9, 'output tokens';



=== TEST 12: Anthropic messages, JSON
--- request
POST /v1/messages
{"model":"claude-3-5-haiku-latest","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- checks
my $j = $resp->{json};
is_deeply [ @$j{qw(id type role model stop_reason)} ], [ 'msg_mock', 'message', 'assistant', 'claude-3-5-haiku-latest', 'end_turn' ], 'message';
ok exists $j->{stop_sequence} && !defined $j->{stop_sequence}, 'stop_sequence null';
is_deeply $j->{content}, [ { type => 'text', text => reply_for('claude-3-5-haiku-latest') } ], 'content';
is_deeply $j->{usage}, { input_tokens => prompt_of($block), output_tokens => 9 }, 'usage';



=== TEST 13: Anthropic messages, stream
--- request
POST /v1/messages
{"model":"claude","max_tokens":64,"stream":true,"messages":[]}
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
--- checks
my @ev = @{ $resp->{sse} };
ok !(grep { $_->{event} ne $_->{json}{type} } @ev), 'event: line is the type';
is_deeply [ map { $_->{event} } @ev ],
    [ 'message_start', 'content_block_start', ('content_block_delta') x 9, 'content_block_stop', 'message_delta', 'message_stop' ],
    'event sequence';
my $m = $ev[0]{json}{message};
is_deeply $m->{content}, [], 'message_start: empty content';
is_deeply $m->{usage}, { input_tokens => prompt_of($block), output_tokens => 1 }, 'message_start: usage';
is $m->{model}, 'claude', 'model';
is_deeply $ev[1]{json}{content_block}, { type => 'text', text => '' }, 'content_block_start';
ok !(grep { $_->{json}{delta}{type} ne 'text_delta' } @ev[2 .. 10]), 'text_delta';
is join('', map { $_->{json}{delta}{text} } @ev[2 .. 10]), reply_for('claude'), 'text';
is_deeply $ev[12]{json}{delta}, { stop_reason => 'end_turn', stop_sequence => undef }, 'message_delta';
is_deeply $ev[12]{json}{usage}, { output_tokens => 9 }, 'message_delta usage';
unlike $resp->{body}, qr/\[DONE\]/, 'no [DONE]';



=== TEST 14: models list
--- request
GET /v1/models
--- error_code: 200
--- checks
is_deeply $resp->{json}, { object => 'list',
    data => [ { id => 'mock-model', object => 'model', created => 0, owned_by => 'conductor' } ] }, 'list';



=== TEST 15: unknown path: 404, OpenAI shape
--- request
POST /v1/fine_tuning/jobs
{"model":"x"}
--- error_code: 404
--- checks
my $e = $resp->{json}{error};
is $e->{type}, 'invalid_request_error', 'type';
like $e->{message}, qr/unknown endpoint/, 'message';
ok exists $e->{param} && !defined $e->{param} && exists $e->{code} && !defined $e->{code}, 'param, code null';



=== TEST 16: GET on a POST endpoint: 405 in both dialects
--- request_eval
[ "GET /v1/chat/completions", "GET /v1/messages", "POST /v1/models\n{}" ]
--- error_code: 405
--- checks
my ($oa, $an, $models) = @$resps;
is $oa->{status}, 405, 'chat: 405';
is $oa->{headers}{allow}, 'POST', 'chat: Allow';
is $oa->{json}{error}{type}, 'invalid_request_error', 'chat: OpenAI shape';
is $an->{status}, 405, 'messages: 405';
is $an->{json}{type}, 'error', 'messages: Anthropic shape';
is $an->{json}{error}{type}, 'invalid_request_error', 'messages: error type';
is $models->{headers}{allow}, 'GET, HEAD', 'models: Allow';



=== TEST 17: body not JSON: 400, OpenAI shape
--- request
POST /v1/chat/completions
{"model":"x",
--- error_code: 400
--- checks
is $resp->{json}{error}{type}, 'invalid_request_error', 'OpenAI error';
like $resp->{json}{error}{message}, qr/not a JSON object/, 'message';



=== TEST 18: body JSON but not an object, and empty: 400, Anthropic shape on /messages
--- request_eval
[ qq{POST /v1/messages\n["model"]}, qq{POST /v1/messages\n} ]
--- error_code: 400
--- checks
for my $r (@$resps) {
    is $r->{status}, 400, 'status';
    is $r->{json}{type}, 'error', 'Anthropic shape';
    is $r->{json}{error}{type}, 'invalid_request_error', 'type';
}



=== TEST 19: a body of megabytes, buffered to a temp file
--- http_config
client_body_buffer_size 8k;
client_max_body_size 8m;
--- request_eval
our $BIG = '{"model":"big","messages":[{"role":"user","content":"' . ('x' x (3 * 1024 * 1024)) . '"}],"stream":true,"stream_options":{"include_usage":true}}';
[ "POST /v1/chat/completions\n$BIG" ]
--- error_code: 200
--- response_headers
Content-Type: text/event-stream
--- error_log
a client request body is buffered to a temporary file
--- no_error_log
[error]
--- checks
my $c = events_of($resp);
is $c->[-1]{usage}{prompt_tokens}, int(length($main::BIG) / 4), 'prompt tokens from the whole body';
is $c->[0]{model}, 'big', 'model read from the file';



=== TEST 20: delay=: events are spaced, JSON answers are not delayed
--- config
location / { conductor_mock delay=40ms; }
--- request_eval
[ qq{POST /v1/messages\n{"model":"slow","stream":true}}, qq{POST /v1/messages\n{"model":"slow"}} ]
--- error_code: 200
--- checks
my ($stream, $json) = @$resps;
is scalar @{ $stream->{sse} }, 14, 'every event';
is join('', map { $_->{json}{delta}{text} // '' } @{ $stream->{sse} }), reply_for('slow'), 'text';
cmp_ok $stream->{elapsed}, '>=', 13 * 0.040 - 0.01, '13 gaps of 40 ms';
is $json->{json}{content}[0]{text}, reply_for('slow'), 'JSON answer';



=== TEST 21: delay=: the first event leaves at once; a client that goes away ends the request
--- config
location / { conductor_mock delay=1s; }
--- request
GET /v1/models
--- error_code: 200
--- error_log
client prematurely closed connection
--- checks
my $s = http_stream_open(POST => '/v1/chat/completions', {}, '{"model":"gone","stream":true}');
is $s->status, 200, 'stream started';
ok $s->read_until(qr/"role":"assistant"/, 5), 'first event';
unlike $s->body, qr/"content":"Hello /, 'the next one waits';
$s->close;
Time::HiRes::sleep(0.5);
my $again = http_request(POST => '/v1/chat/completions', {}, '{"model":"next"}');
is $again->{json}{model}, 'next', 'the worker still serves';



=== TEST 22: bad arguments
--- config
location / { conductor_mock delay=soon; }
--- must_die
--- error_log
invalid delay "delay=soon"



=== TEST 23: unknown parameter
--- config
location / { conductor_mock fast; }
--- must_die
--- error_log
invalid parameter "fast"



=== TEST 24: twice in one location
--- config
location / { conductor_mock; conductor_mock; }
--- must_die
--- error_log
"conductor_mock" directive is duplicate
