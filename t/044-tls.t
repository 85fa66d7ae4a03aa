# https providers: TLS per attempt with the provider's name (SNI and
# certificate check), sessions and kept-alive connections per provider, and
# a fallback chain that mixes https and http.
use lib 't/lib';
use Test::Conductor;

my $env = harness_env();
my $dir = "$env->{TEST_NGINX_SERVROOT}-tls";

# a throwaway CA and a certificate for the mock's name: nothing of the
# machine's trust store is touched
system("rm -rf $dir && mkdir -p $dir") == 0 or die;
my $q = '>/dev/null 2>&1';
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=conductor-test-ca "
    . "-keyout $dir/ca.key -out $dir/ca.crt $q") == 0 or die 'ca';
system("openssl req -newkey rsa:2048 -nodes -subj /CN=mock.conductor.test "
    . "-keyout $dir/mock.key -out $dir/mock.csr $q") == 0 or die 'csr';
open my $ext, '>', "$dir/ext" or die;
print $ext "subjectAltName=DNS:mock.conductor.test,DNS:other.conductor.test,IP:127.0.0.1\n";
close $ext;
system("openssl x509 -req -in $dir/mock.csr -CA $dir/ca.crt -CAkey $dir/ca.key "
    . "-CAcreateserial -days 2 -extfile $dir/ext -out $dir/mock.crt $q") == 0 or die 'crt';

# the shipped snippet, trusting the test CA instead of the system's
open my $in, '<', "$env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf" or die;
my $snippet = do { local $/; <$in> };
$snippet =~ s{proxy_ssl_trusted_certificate \S+;}{proxy_ssl_trusted_certificate $dir/ca.crt;}
    or die 'no trusted certificate line in the snippet';
open my $out, '>', "$dir/proxy.conf" or die;
print $out $snippet;
close $out;

my ($tls, $tls2) = ($env->{TEST_NGINX_MOCK_PORT3} + 100, $env->{TEST_NGINX_MOCK_PORT3} + 101);

sub gateway {
    my ($http) = @_;
    start_nginx(
        http_config => <<"HTTP",
    conductor_zone conductor:1m;
    $http
    upstream conductor_backend { conductor_balancer keepalive=8; }
    server {
        listen 127.0.0.1:$tls ssl;
        listen 127.0.0.1:$tls2 ssl;
        ssl_certificate $dir/mock.crt;
        ssl_certificate_key $dir/mock.key;
        location / { conductor_mock; add_header X-Seen-Host \$host always; add_header X-Seen-SNI \$ssl_server_name always; add_header X-Reused \$ssl_session_reused always; }
    }
HTTP
        config => "location /v1/ { conductor_route; include $dir/proxy.conf; }",
    );
}

sub chat {
    my ($model, $stream) = @_;
    return http_request(POST => '/v1/chat/completions', {},
        sprintf('{"model":"%s","messages":[],"stream":%s}', $model,
            $stream ? 'true' : 'false'));
}

{
    # mock.conductor.test is in no DNS: "address" says where to connect,
    # the url's name is still the Host, the SNI and what is verified
    gateway(<<"HTTP");
    conductor_provider secure {
        url https://mock.conductor.test:$tls/v1;
        address 127.0.0.1:$tls;
        key k1 s1;
    }
    conductor_model m { secure mock-model; }
HTTP
    my $r = chat('m');
    is $r->{status}, 200, 'https provider answered'
        or diag join "\n", grep { /\[(error|warn|crit|alert)\]/ } split /\n/, error_log_since_start();
    like $r->{json}{choices}[0]{message}{content}, qr/^Hello from mock-model/, 'through TLS';
    is $r->{headers}{'x-seen-host'}, 'mock.conductor.test', 'Host of the provider';
    is $r->{headers}{'x-seen-sni'}, 'mock.conductor.test', 'SNI of the provider';

    my $s = chat('m', 1);
    like $s->{body}, qr/data: \[DONE\]/, 'a stream over TLS';

    my @again = map { chat('m') } 1 .. 3;
    is scalar(grep { $_->{status} == 200 } @again), 3, 'kept-alive TLS connections reused';
    like error_log_since_start(), qr/reusing a kept-alive connection to provider "secure"/, 'reused';
    unlike error_log_since_start(), qr/\[(alert|crit)\]/, 'no alert';
    is_deeply stop_nginx(), [], 'stopped cleanly';
}

{
    # an https provider that fails, then an http one: the scheme per attempt
    gateway(<<"HTTP");
    conductor_provider bad { url https://127.0.0.1:$env->{TEST_NGINX_DEAD_PORT}/v1; key k1 s1; }
    conductor_provider secure {
        url https://other.conductor.test:$tls2/v1;
        address 127.0.0.1:$tls2;
        key k2 s2;
    }
    conductor_provider plain { url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1; key k3 s3; }
    conductor_model m { bad a; plain b priority=2; secure c priority=3; }
    conductor_model back { plain "b;status=503"; secure c priority=2; }
HTTP
    my $r = chat('m');
    is $r->{status}, 200, 'https failed over to http';
    is $r->{headers}{'x-conductor-provider'}, 'plain', 'the http provider';
    is $r->{headers}{'x-conductor-attempts'}, 2, 'second attempt';

    $r = chat('back');
    is $r->{status}, 200, 'http failed over to https';
    is $r->{headers}{'x-conductor-provider'}, 'secure', 'the https provider';
    like $r->{json}{choices}[0]{message}{content}, qr/^Hello from c/, 'its answer';
    is_deeply stop_nginx(), [], 'stopped cleanly';
}

{
    # a certificate that does not name the provider's host is refused
    gateway(<<"HTTP");
    conductor_provider wrong {
        url https://wrong.conductor.test:$tls/v1;
        address 127.0.0.1:$tls;
        key k1 s1;
    }
    conductor_model m { wrong x; }
HTTP
    my $r = chat('m');
    is $r->{status}, 502, 'refused: the certificate does not name the host';
    like error_log_since_start(), qr/upstream SSL certificate does not match "wrong.conductor.test"/,
        'said why';
    stop_nginx();
}

{
    # two providers behind one address, with different names: a kept-alive
    # connection opened for one name is never handed to the other
    gateway(<<"HTTP");
    conductor_provider one {
        url https://mock.conductor.test:$tls/v1;
        address 127.0.0.1:$tls;
        key k1 s1;
    }
    conductor_provider two {
        url https://other.conductor.test:$tls/v1;
        address 127.0.0.1:$tls;
        key k2 s2;
    }
    conductor_model m { one a; two b; }
HTTP
    my @r = map { chat('m') } 1 .. 8;
    my %name = (one => 'mock.conductor.test', two => 'other.conductor.test');
    is scalar(grep { $_->{status} == 200 } @r), 8, 'all answered';
    is scalar(grep { $_->{headers}{'x-seen-sni'} eq $name{ $_->{headers}{'x-conductor-provider'} } } @r), 8,
        "each answer came over a connection opened with its provider's name";
    like error_log_since_start(), qr/reusing a kept-alive connection to provider "two"/, 'reused';
    is_deeply stop_nginx(), [], 'stopped cleanly';
}

system("rm -rf $dir");
done_testing();
