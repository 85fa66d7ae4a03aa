# A stream the provider breaks: cut by a reset (reset_mid, cut_mid,
# cut_partial), ended cleanly without its terminal event (no_terminal), or
# gone idle (stall_mid) past proxy_read_timeout or conductor_stream_timeout.
# The client always gets an error event in the endpoint's dialect and then a
# properly terminated chunked body; the answer counts as an error of class
# stream_cut / stream_timeout (status JSON, Prometheus, $conductor_stream_error),
# its usage is estimated unless the provider's had arrived, and it feeds the
# key's breaker. Good streams, and streams that carry the provider's own error
# event, get nothing added.
use lib 't/lib';
use Test::Conductor;
use JSON::PP ();
use IO::Select;
use IO::Socket::INET;

use vars qw(@CLASSES %DIALECT);
@CLASSES = qw(4xx 429 5xx timeout connect stream_cut stream_timeout);

# endpoint, provider, key and request body of each dialect
%DIALECT = (
    openai => {
        uri => '/v1/chat/completions', provider => 'oai', key => 'k1',
        body => '{"model":"%s","stream":true,"stream_options":{"include_usage":true},'
            . '"messages":[{"role":"user","content":"hi"}]}',
    },
    anthropic => {
        uri => '/v1/messages', provider => 'ant', key => 'a1',
        body => '{"model":"%s","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}',
    },
    responses => {
        uri => '/v1/responses', provider => 'oai', key => 'k1',
        body => '{"model":"%s","stream":true,"input":"hi"}',
    },
);

my $EOL = qr/(?:\r\n|\r|\n)/;

# the request of a dialect for an alias, as a request_eval item
sub req {
    my ($dialect, $model, %extra) = @_;
    my $d = $DIALECT{$dialect};
    return { method => 'POST', uri => $d->{uri}, body => sprintf($d->{body}, $model), %extra };
}

# the records of the fault log for /v1/ requests, once $n are written (the
# log phase may run just after the client saw the end of the answer)
sub fault_log {
    my ($env, $n) = @_;
    $n //= 1;
    my @lines;
    for (1 .. 200) {
        if (open my $f, '<', "$env->{TEST_NGINX_SERVROOT}/logs/fault.log") {
            @lines = grep { ($_->{uri} // '') =~ m{^/v1/} } map { JSON::PP::decode_json($_) } <$f>;
            return @lines if @lines >= $n;
        }
        select undef, undef, undef, 0.05;
    }
    return @lines;
}

sub status_json { return http_request(GET => '/conductor/status')->{json} }

sub named { my ($list, $name) = @_; return (grep { $_->{name} eq $name } @{ $list || [] })[0] }

sub key_status {
    my ($s, $provider, $key) = @_;
    return named(named($s->{providers}, $provider)->{keys}, $key);
}

# the value of the Prometheus sample $name{labels}, undef when absent
sub prom_value {
    my ($text, $name, %labels) = @_;
    for my $line (split /\n/, $text) {
        my ($l, $v) = $line =~ /^\Q$name\E\{([^}]*)\} (\S+)/ or next;
        my %got = $l =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
        next unless keys %got == keys %labels;
        next if grep { !defined $got{$_} || $got{$_} ne $labels{$_} } keys %labels;
        return $v;
    }
    return undef;
}

# the bytes the provider sends for the request the gateway made (ids and times
# are fixed with `fixed_ids`, so they are the bytes the gateway received)
sub provider_bytes {
    my ($rec) = @_;
    my %h = (Authorization => "Bearer $rec->{key}");
    $h{'X-Mock'} = $rec->{headers}{'x-mock'} if defined $rec->{headers}{'x-mock'};
    my $r = http_request($rec->{method}, $rec->{url}, \%h, $rec->{body}, port => $rec->{port}, timeout => 10);
    return $r->{body};
}

# the gateway's error events: [offset, text, json] for each
sub error_events {
    my ($body) = @_;
    my @found;
    my $off = 0;
    for my $b (sse_blocks($body)) {
        my $j = block_json($b);
        push @found, [ $off, $b, $j ]
            if $b =~ /\Aevent: ?error$EOL/ || (ref $j eq 'HASH' && exists $j->{error} && !exists $j->{type});
        $off += length $b;
    }
    return @found;
}

# The client's answer ends with exactly one error event of the dialect with
# this code, in its own event, after every byte the provider sent ($sent when
# known), and the chunked body is complete.
sub check_error_end {
    my ($resp, %o) = @_;
    my $l = $o{label};
    is $resp->{status}, 200, "$l: 200 (the head went out before the fault)";
    like $resp->{headers}{'content-type'} // '', qr{^text/event-stream}, "$l: an event stream";
    ok $resp->{complete}, "$l: a complete chunked body, properly terminated"
        or diag 'harness: ' . ($resp->{error} // 'no error') . ($resp->{timed_out} ? ' (timed out)' : '');
    my $body = $resp->{body} // '';
    my $pos = $o{dialect} eq 'openai' ? rindex($body, 'data: {"error":') : rindex($body, 'event: error');
    ok $pos >= 0, "$l: an error event in the $o{dialect} dialect" or do { diag "body tail: " . substr($body, -400); return };
    my ($before, $ev) = (substr($body, 0, $pos), substr($body, $pos));

    my $json;
    if ($o{dialect} eq 'openai') {
        like $ev, qr/\Adata: \{"error":[^\r\n]*($EOL)\1\z/, "$l: `data: {\"error\":...}` then a blank line, the end of the body"
            or diag "event: $ev";
        ($json) = $ev =~ /\Adata: ([^\r\n]*)/;
    }
    else {
        like $ev, qr/\Aevent: error($EOL)data: \{[^\r\n]*\1\1\z/, "$l: `event: error`, `data: {...}`, a blank line, the end of the body"
            or diag "event: $ev";
        ($json) = $ev =~ /\Aevent: error$EOL(?:data: ([^\r\n]*))/;
    }
    my $j = eval { JSON::PP->new->decode($json // '') };
    ok ref $j eq 'HASH', "$l: its data is JSON" or do { diag "data: " . ($json // 'none'); return };
    my $code = $o{code};
    if ($o{dialect} eq 'openai') {
        my $e = $j->{error} // {};
        is_deeply [ sort keys %$j ], ['error'], "$l: {\"error\":{...}}";
        ok defined $e->{message} && !ref $e->{message} && length $e->{message}, "$l: error.message";
        is $e->{type}, 'server_error', "$l: error.type server_error";
        ok exists $e->{param} && !defined $e->{param}, "$l: error.param null";
        is $e->{code}, $code, "$l: error.code $code";
    }
    elsif ($o{dialect} eq 'responses') {
        is $j->{type}, 'error', "$l: type error";
        is $j->{code}, $code, "$l: code $code";
        ok defined $j->{message} && !ref $j->{message} && length $j->{message}, "$l: message";
        ok exists $j->{param} && !defined $j->{param}, "$l: param null";
        is ref $j->{error}, 'HASH', "$l: a nested error object (the openai SDK throws on it)";
        is $j->{error}{type}, 'server_error', "$l: error.type server_error";
        is $j->{error}{code}, $code, "$l: error.code $code";
        ok defined $j->{error}{message} && length $j->{error}{message}, "$l: error.message";
    }
    else {
        is $j->{type}, 'error', "$l: type error";
        is ref $j->{error}, 'HASH', "$l: an error object";
        is $j->{error}{type}, 'api_error', "$l: error.type api_error";
        ok defined $j->{error}{message} && !ref $j->{error}{message} && length $j->{error}{message}, "$l: error.message";
    }
    is scalar(error_events($body)), 1, "$l: exactly one error event";

    # before it: the provider's bytes, unchanged, then only what ends a cut line
    if (defined $o{sent}) {
        is substr($before, 0, length $o{sent}), $o{sent}, "$l: every byte the provider sent reached the client unchanged";
        my $added = substr $before, length $o{sent};
        like $added, qr/\A(?:\r\n|\r|\n)*\z/, "$l: the gateway added only line ends before its event"
            or diag "added: " . substr($added, 0, 300);
        is $added, '', "$l: nothing added after a whole event"
            if $o{sent} eq '' || $o{sent} =~ /(?:\n\n|\r\n\r\n|\r\r)\z/;
    }
    ok $before eq '' || $before =~ /(?:\n\n|\r\n\r\n|\r\r)\z/, "$l: the error event starts an event of its own"
        or diag 'before it: ...' . substr($before, -200);
    unlike $before, qr/data: \[DONE\]/, "$l: no [DONE] before it" if $o{dialect} eq 'openai';
    return $before;
}

# the error counters of key, provider and model, as JSON and Prometheus
sub check_counts {
    my ($s, $prom, %o) = @_;
    my $l = $o{label};
    my %want = map { $_ => 0 } @CLASSES;
    $want{ $o{class} } = $o{n} // 1 if $o{class};
    my @scopes = (
        [ key      => key_status($s, $o{provider}, $o{key}), provider => $o{provider}, key => $o{key} ],
        [ provider => named($s->{providers}, $o{provider}), provider => $o{provider} ],
        [ model    => named($s->{models}, $o{model}), model => $o{model} ],
    );
    for my $sc (@scopes) {
        my ($scope, $obj, %labels) = @$sc;
        ok $obj, "$l: $scope reported" or next;
        is_deeply { map { $_ => $obj->{errors}{$_} } @CLASSES }, \%want, "$l: $scope errors by class"
            or diag explain $obj->{errors};
        for my $class (qw(stream_cut stream_timeout)) {
            is prom_value($prom, "conductor_${scope}_errors_total", %labels, class => $class), $want{$class},
                "$l: conductor_${scope}_errors_total{class=\"$class\"}";
        }
    }
}

# one streaming request broken by the provider: the end, the log, the counters
sub fault_case {
    my ($resp, $mock, $env, %o) = @_;
    my $d = $DIALECT{ $o{dialect} };
    my $l = $o{label} //= "$o{dialect} $o{model}";
    is scalar(@$mock), 1, "$l: one upstream request (nothing retried once the answer began)";
    my $sent = $o{stalled} ? undef : provider_bytes($mock->[0]);
    if (defined $sent && $o{strip}) {
        $sent = join '', grep { !usage_only(block_json($_)) } sse_blocks($sent);
    }
    check_error_end($resp, %o, sent => $sent);
    if ($o{stalled}) {
        cmp_ok $resp->{elapsed}, '>=', 0.9, "$l: it waited for the idle timeout";
        cmp_ok $resp->{elapsed}, '<', 2.8, "$l: ... and no longer (the provider stalls 3 s)";
    }

    my ($rec) = fault_log($env, 1);
    ok $rec, "$l: logged" or return;
    is $rec->{stream_error}, $o{code}, "$l: \$conductor_stream_error is $o{code}";
    is $rec->{usage_source}, $o{usage}, "$l: usage $o{usage}";
    if ($o{usage} eq 'response') {
        is_deeply [ @$rec{qw(prompt_tokens completion_tokens)} ], [ 100, 7 ], "$l: the provider's numbers";
    }
    else {
        cmp_ok $rec->{completion_tokens} || 0, '>', 0, "$l: an estimate, never zero";
    }
    my $s = status_json();
    my $prom = http_request(GET => '/conductor/status?format=prometheus')->{body};
    check_counts($s, $prom, %o, provider => $d->{provider}, key => $d->{key}, class => $o{code});
}

# a good stream: the provider's bytes exactly, nothing added, nothing counted
sub good_case {
    my ($resp, $mock, $env, %o) = @_;
    my $d = $DIALECT{ $o{dialect} };
    my $l = $o{label} //= "$o{dialect} $o{model}";
    is $resp->{status}, 200, "$l: 200";
    ok $resp->{complete}, "$l: a complete chunked body" or diag $resp->{error};
    my $sent = provider_bytes($mock->[0]);
    is $resp->{body}, $sent, "$l: byte for byte what the provider sent";
    is scalar(error_events($resp->{body})), 0, "$l: no error event";
    my ($rec) = fault_log($env, 1);
    is $rec->{stream_error}, '', "$l: \$conductor_stream_error empty";
    is $rec->{usage_source}, 'response', "$l: usage from the response";
    is_deeply [ @$rec{qw(prompt_tokens completion_tokens)} ], [ 100, 7 ], "$l: the provider's numbers";
    my $prom = http_request(GET => '/conductor/status?format=prometheus')->{body};
    check_counts(status_json(), $prom, %o, provider => $d->{provider}, key => $d->{key}, class => undef);
}

# Two chat streams on one keep-alive connection: [the first answer's raw
# bytes, whether its chunked body ended, the second answer's status line or
# what happened instead].
sub two_on_one_connection {
    my ($env, $model) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $env->{TEST_NGINX_PORT}, Proto => 'tcp', Timeout => 5)
        or return [ '', 0, "connect: $!" ];
    my $body = qq{{"model":"$model","stream":true,"stream_options":{"include_usage":true},"messages":[]}};
    my $req = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
    my $sel = IO::Select->new($s);
    my $read = sub {    # until the end of a chunked body, EOF or 10 s
        my ($buf, $deadline) = ('', time + 10);
        while ($buf !~ /\r\n0\r\n\r\n\z/ && time < $deadline) {
            next unless $sel->can_read(1);
            my $n = sysread $s, my $d, 65536;
            last unless $n;    # EOF, or reset
            $buf .= $d;
        }
        return $buf;
    };
    local $SIG{PIPE} = 'IGNORE';
    print {$s} $req;
    my $first = $read->();
    my $ended = $first =~ /\r\n0\r\n\r\n\z/ ? 1 : 0;
    select undef, undef, undef, 0.3;    # what a pooled client does: reuse it a moment later
    my $second = (print {$s} $req) ? $read->() : '';
    close $s;
    my ($status) = $second =~ m{\A(HTTP/1\.1 \d+)};
    return [ $first, $ended, $status // (length $second ? 'garbage' : 'closed by the gateway') ];
}

our $HTTP = <<'HTTP';
    conductor_zone conductor:1m;
    # many faults on one key here: its breaker is TEST 23's business
    conductor_breaker failures=100 timeout=30s;
    log_format fault escape=json '{"uri":"$request_uri","status":"$status","provider":"$conductor_provider",'
        '"key":"$conductor_key","prompt_tokens":"$conductor_prompt_tokens",'
        '"completion_tokens":"$conductor_completion_tokens","usage_source":"$conductor_usage_source",'
        '"stream_error":"$conductor_stream_error"}';
    access_log logs/fault.log fault;
    conductor_provider oai {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
        key k1 "k1;prompt_tokens=100;completion_tokens=7;fixed_ids";
    }
    conductor_provider ant {
        url http://127.0.0.1:$TEST_NGINX_MOCK_PORT2/v1;
        api anthropic;
        key a1 "a1;prompt_tokens=100;completion_tokens=7;fixed_ids";
    }
    conductor_model good    { oai good-m;                 ant good-a; }
    conductor_model reset   { oai "reset-m;reset_mid";    ant "reset-a;reset_mid"; }
    conductor_model cut     { oai "cut-m;cut_mid";        ant "cut-a;cut_mid"; }
    conductor_model partial { oai "partial-m;cut_partial"; ant "partial-a;cut_partial"; }
    conductor_model noterm  { oai "noterm-m;no_terminal"; ant "noterm-a;no_terminal"; }
    conductor_model stall   { oai "stall-m;stall_mid=3000"; ant "stall-a;stall_mid=3000"; }
    conductor_model errmid  { oai "errmid-m;error_mid";   ant "errmid-a;error_mid"; }
    conductor_model slow    { oai "slow-m;chunk_delay=300;completion_tokens=2"; }
    upstream conductor_backend { conductor_balancer; }
HTTP

block_defaults(
    http_config => $HTTP,
    config => <<'SERVER',
    location /v1/ {
        conductor_route;
        include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
        proxy_read_timeout 1s;
    }
    location = /conductor/status { conductor_status; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: a good chat stream: nothing added, nothing counted
--- request_eval
req(openai => 'good')
--- error_code: 200
--- checks
good_case($resp, $mock, $env, dialect => 'openai', model => 'good');
like $resp->{body}, qr/data: \[DONE\]\n\n\z/, 'ends with [DONE]';

=== TEST 2: a good Anthropic stream
--- request_eval
req(anthropic => 'good')
--- error_code: 200
--- checks
good_case($resp, $mock, $env, dialect => 'anthropic', model => 'good');
like $resp->{body}, qr/event: message_stop\ndata: \{"type":"message_stop"\}\n\n\z/, 'ends with message_stop';

=== TEST 3: a good Responses stream
--- request_eval
req(responses => 'good')
--- error_code: 200
--- checks
good_case($resp, $mock, $env, dialect => 'responses', model => 'good');
like $resp->{body}, qr/event: response\.completed\ndata: [^\n]*\n\n\z/, 'ends with response.completed';

=== TEST 4: chat stream cut (reset_mid): error event stream_cut, proper end, counted, estimated
--- request_eval
req(openai => 'reset')
--- checks
fault_case($resp, $mock, $env, dialect => 'openai', model => 'reset', code => 'stream_cut', usage => 'estimated');

=== TEST 5: Anthropic stream cut (reset_mid)
--- request_eval
req(anthropic => 'reset')
--- checks
fault_case($resp, $mock, $env, dialect => 'anthropic', model => 'reset', code => 'stream_cut', usage => 'estimated');

=== TEST 6: Responses stream cut (reset_mid)
--- request_eval
req(responses => 'reset')
--- checks
fault_case($resp, $mock, $env, dialect => 'responses', model => 'reset', code => 'stream_cut', usage => 'estimated');

=== TEST 7: chat stream cut by a TCP reset at an event boundary (cut_mid)
--- request_eval
req(openai => 'cut')
--- checks
fault_case($resp, $mock, $env, dialect => 'openai', model => 'cut', code => 'stream_cut', usage => 'estimated');

=== TEST 8: Anthropic stream cut by a TCP reset (cut_mid)
--- request_eval
req(anthropic => 'cut')
--- checks
fault_case($resp, $mock, $env, dialect => 'anthropic', model => 'cut', code => 'stream_cut', usage => 'estimated');

=== TEST 9: Responses stream cut by a TCP reset (cut_mid)
--- request_eval
req(responses => 'cut')
--- checks
fault_case($resp, $mock, $env, dialect => 'responses', model => 'cut', code => 'stream_cut', usage => 'estimated');

=== TEST 10: chat stream cut inside a data line (cut_partial): an empty line, then the error event
--- request_eval
req(openai => 'partial')
--- checks
fault_case($resp, $mock, $env, dialect => 'openai', model => 'partial', code => 'stream_cut', usage => 'estimated');

=== TEST 11: Anthropic stream cut inside a data line (cut_partial)
--- request_eval
req(anthropic => 'partial')
--- checks
fault_case($resp, $mock, $env, dialect => 'anthropic', model => 'partial', code => 'stream_cut', usage => 'estimated');

=== TEST 12: chat stream ended cleanly without [DONE]: error event; the usage chunk had arrived
--- request_eval
req(openai => 'noterm')
--- checks
fault_case($resp, $mock, $env, dialect => 'openai', model => 'noterm', code => 'stream_cut', usage => 'response');

=== TEST 13: the same without include_usage: the usage chunk still taken out, its usage still counted
--- request_eval
+{ method => 'POST', uri => '/v1/chat/completions', body => '{"model":"noterm","stream":true,"messages":[]}' }
--- checks
fault_case($resp, $mock, $env, dialect => 'openai', model => 'noterm', code => 'stream_cut', usage => 'response', strip => 1);
ok !(grep { usage_only($_->{json}) } @{ parse_sse($resp->{body}) }), 'no usage-only chunk reached the client';
is $mock->[0]{json}{stream_options}{include_usage}, JSON::PP::true, 'the gateway asked for usage';

=== TEST 14: Anthropic stream ended cleanly without message_stop: error event; message_delta had the usage
--- request_eval
req(anthropic => 'noterm')
--- checks
fault_case($resp, $mock, $env, dialect => 'anthropic', model => 'noterm', code => 'stream_cut', usage => 'response');

=== TEST 15: Responses stream ended cleanly without response.completed: error event, estimated
--- request_eval
req(responses => 'noterm')
--- checks
fault_case($resp, $mock, $env, dialect => 'responses', model => 'noterm', code => 'stream_cut', usage => 'estimated');

=== TEST 16: chat stream idle past proxy_read_timeout 1s: error event stream_timeout
--- request_eval
req(openai => 'stall')
--- checks
fault_case($resp, $mock, $env, dialect => 'openai', model => 'stall', code => 'stream_timeout', usage => 'estimated', stalled => 1);

=== TEST 17: Anthropic stream idle past proxy_read_timeout
--- request_eval
req(anthropic => 'stall')
--- checks
fault_case($resp, $mock, $env, dialect => 'anthropic', model => 'stall', code => 'stream_timeout', usage => 'estimated', stalled => 1);

=== TEST 18: Responses stream idle past proxy_read_timeout
--- request_eval
req(responses => 'stall')
--- checks
fault_case($resp, $mock, $env, dialect => 'responses', model => 'stall', code => 'stream_timeout', usage => 'estimated', stalled => 1);

=== TEST 19: the provider's own error event mid-stream is not given a second one
--- request_eval
[ req(openai => 'errmid'), req(anthropic => 'errmid'), req(responses => 'errmid') ]
--- checks
my @d = qw(openai anthropic responses);
for my $i (0 .. 2) {
    my $r = $resps->[$i];
    my $l = "$d[$i] errmid";
    ok $r->{complete}, "$l: a complete chunked body" or diag $r->{error};
    is $r->{body}, provider_bytes($mock->[$i]), "$l: byte for byte what the provider sent, nothing added";
    my @e = error_events($r->{body});
    is scalar(@e), 1, "$l: one error event";
    like $e[0][1] // '', qr/mock provider error mid-stream/, "$l: the provider's";
}

=== TEST 20: conductor_stream_timeout idle=1s (location) ends idle streams, proxy_read_timeout 60s
--- config
location /v1/ {
    conductor_route;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    proxy_read_timeout 60s;
    conductor_stream_timeout idle=1s;
}
location = /conductor/status { conductor_status; }
--- request_eval
[ req(openai => 'stall'), req(anthropic => 'stall'), req(responses => 'stall') ]
--- timeout: 10
--- checks
my @d = qw(openai anthropic responses);
for my $i (0 .. 2) {
    my $r = $resps->[$i];
    my $l = "$d[$i] idle";
    check_error_end($r, dialect => $d[$i], code => 'stream_timeout', label => $l);
    cmp_ok $r->{elapsed}, '>=', 0.9, "$l: after a second of silence";
    cmp_ok $r->{elapsed}, '<', 2.8, "$l: not when the provider woke up (3 s)";
}
my @log = fault_log($env, 3);
is_deeply [ map { $_->{stream_error} } @log ], [ ('stream_timeout') x 3 ], '$conductor_stream_error';
is_deeply [ map { $_->{usage_source} } @log ], [ ('estimated') x 3 ], 'estimated';
my $s = status_json();
my $prom = http_request(GET => '/conductor/status?format=prometheus')->{body};
is key_status($s, 'oai', 'k1')->{errors}{stream_timeout}, 2, 'key k1: errors stream_timeout 2 (chat, responses)';
is key_status($s, 'ant', 'a1')->{errors}{stream_timeout}, 1, 'key a1: errors stream_timeout 1';
is named($s->{providers}, 'oai')->{errors}{stream_timeout}, 2, 'provider oai: 2';
is named($s->{models}, 'stall')->{errors}{stream_timeout}, 3, 'model stall: 3';
is prom_value($prom, 'conductor_key_errors_total', provider => 'ant', key => 'a1', class => 'stream_timeout'), 1,
    'conductor_key_errors_total{class="stream_timeout"}';

=== TEST 21: conductor_stream_timeout in server{}: idle, not total time; a slow but steady stream passes
--- config
conductor_stream_timeout idle=1s;
location /v1/ {
    conductor_route;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    proxy_read_timeout 60s;
}
location = /conductor/status { conductor_status; }
--- request_eval
[ req(openai => 'slow'), req(openai => 'stall') ]
--- timeout: 10
--- checks
my ($slow, $stall) = @$resps;
ok $slow->{complete}, 'slow: complete';
cmp_ok $slow->{elapsed}, '>', 1.2, 'slow: longer than the idle timeout in all';
like $slow->{body}, qr/data: \[DONE\]\n\n\z/, 'slow: ends with [DONE]';
is scalar(error_events($slow->{body})), 0, 'slow: no error event';
check_error_end($stall, dialect => 'openai', code => 'stream_timeout', label => 'stall');
cmp_ok $stall->{elapsed}, '<', 2.8, 'stall: ended at the idle timeout';
my @log = fault_log($env, 2);
is_deeply [ map { $_->{stream_error} } @log ], [ '', 'stream_timeout' ], '$conductor_stream_error';

=== TEST 22: conductor_stream_timeout in http{}
--- http_config eval
(my $h = $main::HTTP) =~ s/\$(TEST_NGINX_\w+)/$ENV{$1}/g;
$h . "    conductor_stream_timeout idle=1s;\n"
--- config
location /v1/ {
    conductor_route;
    include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    proxy_read_timeout 60s;
}
location = /conductor/status { conductor_status; }
--- request_eval
req(anthropic => 'stall')
--- timeout: 10
--- checks
check_error_end($resp, dialect => 'anthropic', code => 'stream_timeout', label => 'anthropic idle');
cmp_ok $resp->{elapsed}, '<', 2.8, 'ended at the idle timeout';
my ($rec) = fault_log($env, 1);
is $rec->{stream_error}, 'stream_timeout', '$conductor_stream_error';

=== TEST 23: two cut streams open the key's breaker; the third request goes to the other key
--- http_config
conductor_zone conductor:1m;
conductor_breaker failures=2 timeout=30s;
log_format fault escape=json '{"uri":"$request_uri","key":"$conductor_key","stream_error":"$conductor_stream_error"}';
access_log logs/fault.log fault;
conductor_provider p {
    url http://127.0.0.1:$TEST_NGINX_MOCK_PORT/v1;
    key cutter "cutter;cut_mid;fixed_ids";
    key steady "steady;fixed_ids";
}
conductor_model m { p pm; }
conductor_strategy sequential;
upstream conductor_backend { conductor_balancer; }
--- request_eval
[ map { +{ method => 'POST', uri => '/v1/chat/completions',
          body => '{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}' } } 1 .. 3 ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{key} =~ /^(\w+)/ } @$mock ], [qw(cutter cutter steady)], 'cutter twice, then steady';
check_error_end($resps->[$_], dialect => 'openai', code => 'stream_cut', label => "cut stream " . ($_ + 1)) for 0, 1;
ok $resp->{complete}, 'the third: complete';
like $resp->{body}, qr/data: \[DONE\]\n\n\z/, 'the third: a good stream';
is scalar(error_events($resp->{body})), 0, 'the third: no error event';
my $s = status_json();
my $k = key_status($s, 'p', 'cutter');
is $k->{breaker}, 'open', "the cut streams opened cutter's breaker";
is $k->{errors}{stream_cut}, 2, 'cutter: errors stream_cut 2';
is $k->{consecutive_failures}, 2, 'cutter: two failures in a row';
is key_status($s, 'p', 'steady')->{breaker}, 'closed', 'steady: closed';
my @log = fault_log($env, 3);
is_deeply [ map { $_->{stream_error} } @log ], [ 'stream_cut', 'stream_cut', '' ], '$conductor_stream_error';

=== TEST 24: after a broken stream, properly ended, the client's keep-alive connection stays usable
--- request
GET /conductor/status
--- checks
# the chunked body was ended properly, so nothing tells a pooled client
# (undici, the SDKs) that the connection is gone: closing it makes the
# client's next request fail with a connection error
for my $model (qw(good cut reset stall noterm)) {
    my ($first, $ended, $second) = @{ two_on_one_connection($env, $model) };
    ok $ended, "$model: the first stream's chunked body ended";
    is $second, 'HTTP/1.1 200', "$model: a second request on the same connection is answered";
}
