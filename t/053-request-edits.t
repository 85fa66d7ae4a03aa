# Request edits: aliases are matched exactly as configured (case and all,
# long names too); "routing" members are taken out of the body and what
# reaches the provider is valid JSON, however many there are and wherever
# they sit; every "model" member is rewritten.
use lib 't/lib';
use Test::Conductor;
use JSON::PP ();

our $JSON = JSON::PP->new->utf8;

# A compact body from its top-level members, in order
sub body_of { return '{' . join(',', @_) . '}' }

# What the provider must get for a compact body: the same members in the
# same order with the same bytes, minus every top-level "routing", with each
# "model" value replaced by $upstream (compact JSON has exactly one way to
# join what is left: commas)
sub expected_of {
    my ($upstream, @members) = @_;
    return body_of(map { /^"model":/ ? qq{"model":"$upstream"} : $_ } grep { !/^"routing":/ } @members);
}

# a member list with "routing" members of several shapes
sub routings {
    my ($n) = @_;
    my @shapes = ('{}', 'null', '{"strategy":"least_cost"}', '{"provider":"p","fallback_enabled":false}',
        '{"nested":{"routing":{"a":[1,2,{"b":"}"}]}}}', '"a string, with a comma"', '[]', '0');
    return map { qq{"routing":$shapes[$_ % @shapes]} } 0 .. $n - 1;
}

# Sends the body, checks the answer is the provider's 200 and that the one
# request the provider got carries valid JSON with no top-level "routing";
# returns what the provider got (or undef)
sub send_body {
    my ($body, $what, %o) = @_;
    mock_clear();
    my $r = http_request(POST => $o{path} // '/v1/chat/completions', {}, $body);
    my $got = mock_requests();
    is $r->{status}, 200, "$what: 200" or diag "body: $r->{body}";
    is scalar(@$got), 1, "$what: one request reached the provider";
    my $up = $got->[0] // return undef;
    my $json = eval { $JSON->decode($up->{body}) };
    ok ref $json eq 'HASH', "$what: the provider got valid JSON"
        or diag "provider got: $up->{body}";
    ok !($json && exists $json->{routing}), "$what: no top-level routing upstream";
    is $up->{headers}{'content-length'}, length($up->{body}), "$what: Content-Length matches"
        if defined $up->{headers}{'content-length'};
    return $up;
}

# the exact bytes for a compact body
sub check_exact {
    my ($what, @members) = @_;
    my $up = send_body(body_of(@members), $what) or return;
    is $up->{body}, expected_of('pm', @members), "$what: every other byte unchanged";
}

# a name made of letters only (no digits: a message that names a limit is
# told apart by its number)
sub long_name {
    my ($len, $letter) = @_;
    return substr(join('', map { chr(ord('a') + ($_ * 7 + ord($letter)) % 26) } 0 .. $len - 1), 0, $len);
}

our ($A55, $A64, $A128, $A200, $A256) = map { long_name($_, $_ % 26) } 55, 64, 128, 200, 256;

block_defaults(
    http_config => <<"HTTP",
    conductor_zone conductor:1m;
    conductor_provider p { url http://127.0.0.1:\$TEST_NGINX_MOCK_PORT/v1; key k1 s1; }
    conductor_model m { p pm; }
    conductor_model GPT-4o { p pm; }
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<'SERVER',
    location /v1/ { conductor_route; include $TEST_NGINX_CONF_DIR/conductor_proxy.conf; }
    location /strict/v1/ {
        conductor_route;
        conductor_unknown_models reject;
        include $TEST_NGINX_CONF_DIR/conductor_proxy.conf;
    }
    location = /v1/models { conductor_models; }
SERVER
);

run_tests();

__DATA__

=== TEST 1: an alias with capitals routes to its provider model
--- request
POST /v1/chat/completions
{"model":"GPT-4o","messages":[{"role":"user","content":"hi"}]}
--- error_code: 200
--- checks
is $mock->[0]{json}{model}, 'pm', 'the provider was asked for pm';
is $mock->[0]{body}, '{"model":"pm","messages":[{"role":"user","content":"hi"}]}', 'only the model value changed';
my $list = http_request(GET => '/v1/models');
my @ids = map { $_->{id} } @{ $list->{json}{data} || [] };
ok((grep { $_ eq 'GPT-4o' } @ids), '/v1/models lists GPT-4o as configured') or diag "ids: @ids";

=== TEST 2: matched exactly as configured: other spellings are other, unknown, names
--- request_eval
[ map { qq{POST /strict/v1/chat/completions\n{"model":"$_","messages":[]}} } qw(GPT-4o gpt-4o GPT-4O Gpt-4o) ]
--- error_code: 404
--- response_body_like: ^\{"error":\{"message":"the model does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"\}\}
--- checks
is_deeply [ map { $_->{status} } @$resps ], [200, 404, 404, 404], 'GPT-4o routes; gpt-4o, GPT-4O, Gpt-4o are unknown';
is scalar(@$mock), 1, 'only GPT-4o went upstream';
is $mock->[0]{json}{model}, 'pm', 'as pm';

=== TEST 3: "Fast" and "fast": refused together at configuration time, or two aliases, never one for the other
--- request
GET /v1/models
--- checks
my $ok = eval {
    start_nginx(http_config => "conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1; key k1 s1; }
conductor_model Fast { p pm-Fast; }
conductor_model fast { p pm-fast; }
upstream conductor_backend { conductor_balancer; }
", config => $block->{config}[0]);
    1;
};
my $err = $@;
if ($ok) {
    mock_clear();
    my @st = map { http_request(POST => '/strict/v1/chat/completions', {}, qq{{"model":"$_","messages":[]}})->{status} }
        qw(Fast fast FAST);
    is_deeply \@st, [200, 200, 404], 'both taken: Fast and fast route, FAST is unknown';
    is_deeply [ map { $_->{json}{model} } @{ mock_requests() } ], ['pm-Fast', 'pm-fast'], 'each to its own';
}
else {
    my ($msg) = $err =~ /\[emerg\] \d+#\d+: (.*)$/m;
    like $msg // $err, qr/"(?:Fast|fast)".* in \S+:\d+$/, "refused, naming the alias and the line ($msg)";
    unlike $msg // $err, qr/bucket_size/, 'naming no directive that does not exist';
}

=== TEST 4: long aliases (55 to 256 bytes) are accepted and route
--- http_config eval
my $m = join "\n", map { "conductor_model $_ { p pm-" . length($_) . "; }" } $main::A55, $main::A64, $main::A128, $main::A200, $main::A256;
"conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$ENV{TEST_NGINX_MOCK_PORT}/v1; key k1 s1; }
$m
upstream conductor_backend { conductor_balancer; }
"
--- request_eval
[ map { qq{POST /strict/v1/chat/completions\n{"model":"$_","messages":[]}} } $main::A55, $main::A64, $main::A128, $main::A200, $main::A256 ]
--- error_code: 200
--- checks
is_deeply [ map { $_->{status} } @$resps ], [ (200) x 5 ], 'all five routed';
is_deeply [ map { $_->{json}{model} } @$mock ], [qw(pm-55 pm-64 pm-128 pm-200 pm-256)], 'each to its own provider model';
my $list = http_request(GET => '/v1/models');
my %ids = map { $_->{id} => 1 } @{ $list->{json}{data} || [] };
ok $ids{$main::A200}, '/v1/models lists the 200-byte alias';
my $r = http_request(POST => '/strict/v1/chat/completions', {}, '{"model":"' . substr($main::A200, 0, 199) . '","messages":[]}');
is $r->{status}, 404, 'a prefix of a long alias is another, unknown, name';

=== TEST 5: a 300-byte alias either works, or nginx refuses it naming the real limit
--- request
GET /v1/models
--- checks
my $alias = long_name(300, 'c');
my $ok = eval {
    start_nginx(http_config => "conductor_zone conductor:1m;
conductor_provider p { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1; key k1 s1; }
conductor_model $alias { p pm-300; }
upstream conductor_backend { conductor_balancer; }
", config => $block->{config}[0]);
    1;
};
my $err = $@;
if ($ok) {
    pass 'nginx took the 300-byte alias';
    mock_clear();
    my $r = http_request(POST => '/strict/v1/chat/completions', {}, qq{{"model":"$alias","messages":[]}});
    is $r->{status}, 200, 'and routes it';
    is mock_requests()->[0]{json}{model}, 'pm-300', 'to its provider model';
}
else {
    my ($msg) = $err =~ /\[emerg\] \d+#\d+: (.*?)(?: in \S+:\d+)?$/m;
    $msg //= $err;
    $msg =~ s/[a-z]{40,}/<alias>/g;
    unlike $msg, qr/bucket_size|hash/, "refused, naming no directive that does not exist ($msg)";
    like $msg, qr/\b\d+\b/, "the message names the limit ($msg)";
    like $err, qr{ in \S+nginx\.conf:\d+}, 'and the line';
}

=== TEST 6: the body of the report: routing first and last reaches the provider as valid JSON
--- request
POST /v1/chat/completions
{"routing":{},"model":"m","messages":[{"role":"user","content":"hi"}],"routing":{}}
--- error_code: 200
--- checks
is $mock->[0]{body}, '{"model":"pm","messages":[{"role":"user","content":"hi"}]}', 'exact';

=== TEST 7: one routing member first, in the middle, last, alone with model
--- request
GET /v1/models
--- checks
my @msg = ('"messages":[{"role":"user","content":"say \"routing\":{}, then stop"}]', '"temperature":0.70',
    '"seed":12345678901234567890123');
check_exact('first', '"routing":{"strategy":"sequential"}', '"model":"m"', @msg);
check_exact('middle', '"model":"m"', $msg[0], '"routing":{"strategy":"sequential"}', @msg[1, 2]);
check_exact('last', '"model":"m"', @msg, '"routing":{"strategy":"sequential"}');
check_exact('alone with model, first', '"routing":null', '"model":"m"');
check_exact('alone with model, last', '"model":"m"', '"routing":null');

=== TEST 8: adjacent routing members: at the end, at the start, both
--- request
GET /v1/models
--- checks
my @rest = ('"model":"m"', '"messages":[]', '"max_tokens":7');
check_exact('two at the end', @rest, routings(2));
check_exact('two at the start', routings(2), @rest);
check_exact('two at each end', routings(2), @rest, routings(2));
check_exact('two after model only', '"model":"m"', routings(2));
check_exact('three around model', routings(1), '"model":"m"', routings(2));
check_exact('eight at the end', @rest, routings(8));

=== TEST 9: 20 routing members, together or spread out: 200 and valid JSON upstream
--- request
GET /v1/models
--- checks
my @rest = ('"model":"m"', '"messages":[{"role":"user","content":"hi"}]', '"temperature":0.70', '"n":1');
check_exact('20 at the end', @rest, routings(20));
check_exact('20 at the start', routings(20), @rest);
my @r = routings(20);
my @spread = map { ($r[$_], "\"x$_\":$_") } 0 .. 19;
check_exact('20 spread among other members', @spread[0 .. 19], @rest, @spread[20 .. 39]);
check_exact('20 around model', @r[0 .. 9], '"model":"m"', @r[10 .. 19]);

=== TEST 10: routing members with whitespace around them
--- request
GET /v1/models
--- checks
my $body = qq{{ "routing" : {} ,\n  "model" : "m" , "messages" : [ ] , "x" : 0.70 ,\r\n\t"routing" : { "a" : 1 } , "routing":null ,"routing" : {}\n}};
my $up = send_body($body, 'spaced') or return;
is_deeply scalar(eval { JSON::PP::decode_json($up->{body}) }), { model => 'pm', messages => [], x => 0.7 }, 'everything else intact';
like $up->{body}, qr/"x" : 0\.70/, 'the number as written';

=== TEST 11: 8 and 20 routing members in a stream request: the added stream_options is an edit too
--- request
GET /v1/models
--- checks
for my $n (8, 20) {
    my @r = routings($n);
    my @spread = map { ($r[$_], "\"x$_\":$_") } 0 .. $n - 1;
    my $up = send_body(body_of('"model":"m"', '"stream":true', '"messages":[]', @spread), "stream, $n routing") or next;
    my $want = { model => 'pm', stream => JSON::PP::true, messages => [], (map { ("x$_" => $_) } 0 .. $n - 1),
        stream_options => { include_usage => JSON::PP::true } };
    is_deeply scalar(eval { JSON::PP::decode_json($up->{body}) }), $want,
        "stream, $n routing: stream_options added, routing gone, the rest intact";
}

=== TEST 12: nested "routing" (not top-level) stays
--- request
POST /v1/chat/completions
{"model":"m","messages":[{"role":"user","content":"routing"}],"metadata":{"routing":{}},"routing":{}}
--- error_code: 200
--- checks
is $mock->[0]{body}, '{"model":"pm","messages":[{"role":"user","content":"routing"}],"metadata":{"routing":{}}}', 'exact';

=== TEST 13: "model" given 6 times: every one is rewritten, and the JSON stays valid
--- request
GET /v1/models
--- checks
check_exact('6 models', ('"model":"m"') x 3, '"messages":[]', ('"model":"m"') x 3);
check_exact('6 models, 20 routing', routings(10), ('"model":"m"') x 6, '"messages":[]', routings(10));
my $up = send_body(body_of(('"model":"m"') x 5, '"mod\u0065l":"m"', '"stream":true', '"messages":[]'), '6 models, one escaped, stream')
    or return;
my @values = $up->{body} =~ /"mod(?:el|\\u0065l)":"([^"]*)"/g;
is_deeply \@values, [ ('pm') x 6 ], 'every model value rewritten, the escaped key kept as written';
