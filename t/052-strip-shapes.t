# The usage-only chunk the gateway asked for (stream_options.include_usage)
# is found by its structure, a top-level "choices" that is an empty array and
# a non-null "usage" object, whatever the spelling of the stream: spaces after
# the separators, CR / CRLF / LF line ends, `data:` without a space, extra
# members (obfuscation, stop_reason), running usage on every chunk, usage on
# the finish chunk (never stripped), any byte split. The client gets every
# other byte unchanged: the expected bytes are the provider's own answer to
# the request the gateway made, fetched again straight from the mock (ids
# fixed), less exactly that one event. The usage is still counted.
use lib 't/lib';
use Test::Conductor;
use JSON::PP ();

# the usage records of the shipped JSON log format, once written
sub usage_log {
    my ($env) = @_;
    for (1 .. 200) {
        if (open my $f, '<', "$env->{TEST_NGINX_SERVROOT}/logs/usage.log") {
            my @lines = grep { ($_->{uri} // '') =~ m{^/v1/} } map { JSON::PP::decode_json($_) } <$f>;
            return @lines if @lines;
        }
        select undef, undef, undef, 0.05;
    }
    return ();
}

sub show { (my $s = shift // '') =~ s/\r/\\r/g; return length $s > 3000 ? substr($s, 0, 3000) . '...' : $s }

# The checks of one strip-mode stream: $resp the client's answer, $mock the
# upstream request. $o{usage_chunks}: how many usage-only chunks the provider
# sends (1; 0 with usage=on_finish); $o{content}: the streamed text.
sub strip_case {
    my ($resp, $mock, $env, %o) = @_;
    my $l = $o{label};
    my $want_usage_chunks = $o{usage_chunks} // 1;
    is $resp->{status}, 200, "$l: 200";
    ok $resp->{complete}, "$l: complete chunked body" or diag $resp->{error};
    is scalar(@$mock), 1, "$l: one upstream request" or return;
    my $rec = $mock->[0];
    is $rec->{json}{stream_options}{include_usage}, JSON::PP::true, "$l: the gateway asked the provider for usage";

    # the provider's answer to that very request, in one write (the byte
    # split changes no byte, and one-byte writes take seconds)
    my %h = (Authorization => "Bearer $rec->{key}");
    $h{'X-Mock'} = join ';', grep {defined} $rec->{headers}{'x-mock'}, 'chunk=1048576';
    my $direct = http_request($rec->{method}, $rec->{url}, \%h, $rec->{body}, port => $rec->{port}, timeout => 10);
    ok $direct->{complete}, "$l: the provider's stream fetched again";
    my @blocks = sse_blocks($direct->{body});
    my @usage = grep { usage_only(block_json($_)) } @blocks;
    is scalar(@usage), $want_usage_chunks, "$l: the provider sent $want_usage_chunks usage-only chunk(s)";
    my $expected = join '', grep { !usage_only(block_json($_)) } @blocks;
    ok $resp->{body} eq $expected, "$l: every other byte reached the client unchanged"
        or diag "--- expected:\n" . show($expected) . "\n--- got:\n" . show($resp->{body});

    my @ev = @{ parse_sse($resp->{body}) };
    ok !(grep { usage_only($_->{json}) } @ev), "$l: no chunk with empty choices and a usage reached the client";
    ok !(grep { $_->{json} && ref $_->{json}{choices} eq 'ARRAY' && !@{ $_->{json}{choices} } } @ev),
        "$l: every chunk has a choice (chunk.choices[0] is safe)";
    is $ev[-1]{data}, '[DONE]', "$l: [DONE] kept";
    if (defined $o{content}) {
        my $text = join '', map {
            my $c = $_->{json} && ref $_->{json}{choices} eq 'ARRAY' ? $_->{json}{choices}[0] : undef;
            $c ? $c->{delta}{content} // $c->{text} // '' : ''
        } @ev;
        is $text, $o{content}, "$l: the content";
    }
    if ($o{finish_usage}) {
        my ($fin) = grep { $_->{json} && @{ $_->{json}{choices} || [] } && $_->{json}{choices}[0]{finish_reason} } @ev;
        ok $fin && ref $fin->{json}{usage} eq 'HASH', "$l: the finish chunk kept its usage";
    }

    my ($u) = usage_log($env);
    ok $u, "$l: logged" or return;
    is_deeply [ @$u{qw(prompt_tokens completion_tokens usage_source)} ], [ 100, 7, 'response' ],
        "$l: counted exactly as the provider reported it";
}

# a chat (or, with $legacy, completions) request without include_usage
sub chat {
    my ($model) = @_;
    return { method => 'POST', uri => '/v1/chat/completions',
             body => qq{{"model":"$model","stream":true,"messages":[{"role":"user","content":"hi"}]}} };
}

sub legacy {
    my ($model) = @_;
    return { method => 'POST', uri => '/v1/completions', body => qq{{"model":"$model","stream":true,"prompt":"hi"}} };
}

# unknown model names pass unchanged to the only provider: the tokens in
# the model name are the mock's spelling of the stream
block_defaults(
    http_config => <<'HTTP',
    conductor_zone conductor:1m;
    include $TEST_NGINX_CONF_DIR/conductor_log.conf;
    access_log logs/usage.log conductor_json;
    conductor_provider oai {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
        key k1 "k1;prompt_tokens=100;completion_tokens=7;fixed_ids";
    }
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: the default spelling
--- request_eval
chat('m')
--- checks
strip_case($resp, $mock, $env, label => 'default', content => 'Hello from m');

=== TEST 2: spaced JSON (", " and ": ")
--- request_eval
chat('m;spaced')
--- checks
strip_case($resp, $mock, $env, label => 'spaced', content => 'Hello from m;spaced');

=== TEST 3: CRLF line ends
--- request_eval
chat('m;crlf')
--- checks
strip_case($resp, $mock, $env, label => 'crlf');

=== TEST 4: CR line ends
--- request_eval
chat('m;cr')
--- checks
strip_case($resp, $mock, $env, label => 'cr');

=== TEST 5: data: without a space
--- request_eval
chat('m;nospace')
--- checks
strip_case($resp, $mock, $env, label => 'nospace');

=== TEST 6: an obfuscation member after the others (OpenAI)
--- request_eval
chat('m;obfuscation')
--- checks
strip_case($resp, $mock, $env, label => 'obfuscation');
like $resp->{body}, qr/"obfuscation":"[A-Za-z0-9]{1,16}"\}/, 'the chunks kept theirs';

=== TEST 7: stop_reason null after finish_reason (vLLM)
--- request_eval
chat('m;stop_reason')
--- checks
strip_case($resp, $mock, $env, label => 'stop_reason');
like $resp->{body}, qr/"finish_reason":"stop","stop_reason":null/, 'the finish chunk kept it';

=== TEST 8: running usage on every chunk (vLLM), then the usage-only chunk: the last counts
--- request_eval
chat('m;usage=every_chunk')
--- checks
strip_case($resp, $mock, $env, label => 'every_chunk');
like $resp->{body}, qr/"choices":\[\{[^\n]*"usage":\{"prompt_tokens":100/, 'the running usage on chunks with choices stays';

=== TEST 9: usage on the finish chunk (Cerebras) is never stripped
--- request_eval
chat('m;usage=on_finish')
--- checks
strip_case($resp, $mock, $env, label => 'on_finish', usage_chunks => 0, finish_usage => 1);

=== TEST 10: one-byte writes
--- request_eval
chat('m;chunk=1')
--- checks
strip_case($resp, $mock, $env, label => 'chunk=1', content => 'Hello from m;chunk=1');

=== TEST 11: random byte splits
--- request_eval
chat('m;chunk=random')
--- checks
strip_case($resp, $mock, $env, label => 'chunk=random');

=== TEST 12: spaced, CR line ends, one-byte writes
--- request_eval
chat('m;spaced;cr;chunk=1')
--- checks
strip_case($resp, $mock, $env, label => 'spaced+cr+chunk=1');

=== TEST 13: obfuscation, CRLF, random splits
--- request_eval
chat('m;obfuscation;crlf;chunk=random')
--- checks
strip_case($resp, $mock, $env, label => 'obfuscation+crlf+chunk=random');

=== TEST 14: CR line ends split at random (a CR alone at the end of a read)
--- request_eval
chat('m;cr;chunk=random')
--- checks
strip_case($resp, $mock, $env, label => 'cr+chunk=random');

=== TEST 15: no space, CRLF, one-byte writes
--- request_eval
chat('m;nospace;crlf;chunk=1')
--- checks
strip_case($resp, $mock, $env, label => 'nospace+crlf+chunk=1');

=== TEST 16: spaced running usage with stop_reason and obfuscation, random splits
--- request_eval
chat('m;usage=every_chunk;spaced;stop_reason;obfuscation;chunk=random')
--- checks
strip_case($resp, $mock, $env, label => 'every_chunk+spaced+stop_reason+obfuscation');

=== TEST 17: keep-alive comments between the events
--- request_eval
chat('m;comments;chunk=random')
--- checks
strip_case($resp, $mock, $env, label => 'comments');

=== TEST 18: spaced usage on the finish chunk, CR, one-byte writes: still never stripped
--- request_eval
chat('m;usage=on_finish;spaced;cr;chunk=1')
--- checks
strip_case($resp, $mock, $env, label => 'on_finish+spaced+cr', usage_chunks => 0, finish_usage => 1);

=== TEST 19: legacy completions, default
--- request_eval
legacy('m')
--- checks
strip_case($resp, $mock, $env, label => 'completions', content => 'Hello from m');

=== TEST 20: legacy completions, spaced, one-byte writes
--- request_eval
legacy('m;spaced;chunk=1')
--- checks
strip_case($resp, $mock, $env, label => 'completions spaced+chunk=1');

=== TEST 21: legacy completions, CR line ends, random splits, stop_reason
--- request_eval
legacy('m;cr;chunk=random;stop_reason')
--- checks
strip_case($resp, $mock, $env, label => 'completions cr+chunk=random+stop_reason');

=== TEST 22: legacy completions, CRLF, no space
--- request_eval
legacy('m;crlf;nospace')
--- checks
strip_case($resp, $mock, $env, label => 'completions crlf+nospace');
