# The status page in a real browser: headless Chromium loads
# /conductor/status?format=html, its script fetches the JSON and renders the
# tables; the rendered DOM must show the names and numbers of the JSON, its
# charts must plot the JSON's history (conductor_history) minute by minute
# and its table of recent requests list the JSON's recent ones, the page
# must ask again every 2 s, and a screenshot must be a real image.
use lib 't/lib';
use Test::Conductor;
use Compress::Zlib ();
use File::Path ();
use POSIX ();
use Time::HiRes ();

my $CHROMIUM = $ENV{TEST_NGINX_CHROMIUM} // '/usr/bin/chromium';

# Runs chromium with the flags every run needs, in a new empty profile;
# returns (exit status, stdout).  Killed (its process group, by id) when it
# hangs.
my $runs = 0;
sub chromium {
    my (@args) = @_;
    my $env = harness_env();
    my $profile = "$env->{TEST_NGINX_SERVROOT}/chromium-profile-" . ++$runs;
    File::Path::remove_tree($profile);
    File::Path::make_path($profile);
    my $out = "$env->{TEST_NGINX_SERVROOT}/chromium-$runs.out";
    my $err = "$env->{TEST_NGINX_SERVROOT}/chromium-$runs.err";
    my @argv = ($CHROMIUM, qw(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --disable-dev-shm-usage --hide-scrollbars), "--user-data-dir=$profile", @args);

    my $pid = fork // die "fork: $!";
    if (!$pid) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out or POSIX::_exit(126);
        open STDERR, '>', $err or POSIX::_exit(126);
        { no warnings 'exec'; exec { $argv[0] } @argv; }
        POSIX::_exit(127);
    }
    my $deadline = Time::HiRes::time() + 60;
    my $status;
    while (1) {
        my $r = waitpid $pid, POSIX::WNOHANG();
        if ($r == $pid) { $status = $?; last }
        if (Time::HiRes::time() > $deadline) {
            diag "chromium hung: killing its process group $pid";
            kill 'KILL', -$pid;
            waitpid $pid, 0;
            $status = -1;
            last;
        }
        Time::HiRes::sleep(0.05);
    }
    local $/;
    open my $fh, '<', $out or return ($status, '');
    my $stdout = <$fh>;
    if ($status) {
        open my $efh, '<', $err;
        my @lines = grep { !/dbus|Fontconfig/ } split /\n/, <$efh> // '';
        diag "chromium exited with status $status:\n", join "\n", @lines[-20 .. -1] > 0 ? @lines[-20 .. -1] : @lines;
    }
    return ($status, $stdout // '');
}

# --------------------------------------------------------------- can it run?

unless (-x $CHROMIUM) {
    Test::More::plan(skip_all => "no $CHROMIUM: install it with `apt-get install chromium` "
        . '(scripts/install-deps.sh does), or set TEST_NGINX_CHROMIUM');
}
{
    my ($status, $dom) = chromium('--dump-dom', 'data:text/html,<p>ok</p>');
    Test::More::plan(skip_all => "$CHROMIUM cannot run headless here (see the diagnostics above)")
        if $status || $dom !~ m{<p>ok</p>};
}

# ---------------------------------------------------------------- the page

# the JS formats numbers and money this way
sub num { my $n = shift; 1 while $n =~ s/^(\d+)(\d{3})/$1,$2/; $n }
sub usd { sprintf '$%.6f', shift }

# the cells of the row whose attribute is name="value", as text
sub row_cells {
    my ($dom, $attr, $value) = @_;
    my ($row) = $dom =~ m{<tr $attr="\Q$value\E">(.*?)</tr>}s or return;
    my @cells = $row =~ m{<td[^>]*>(.*?)</td>}gs;
    for (@cells) { s/<[^>]+>//g; s/&amp;/&/g; s/&lt;/</g; s/&gt;/>/g; }
    return @cells;
}

my $env = harness_env();
start_nginx(
    http_config => <<"HTTP",
    conductor_zone conductor:1m;
    conductor_provider alpha {
        url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT}/v1;
        key a1 "alpha-secret-1;prompt_tokens=1200;completion_tokens=34" rpm=50 tpm=200000;
        key a2 "alpha-secret-2;prompt_tokens=10;completion_tokens=5";
        price m-alpha input=2 output=10;
    }
    conductor_provider beta {
        url http://127.0.0.1:$env->{TEST_NGINX_MOCK_PORT3};
        api anthropic;
        key b1 "beta-secret-1;prompt_tokens=300;completion_tokens=45" rpd=1000;
    }
    conductor_model chat { alpha m-alpha; }
    conductor_model claude { beta claude-mock; }
    conductor_unknown_models reject;
    upstream conductor_backend { conductor_balancer; }
HTTP
    config => <<"SERVER",
    location /v1/ {
        conductor_route;
        include $env->{TEST_NGINX_CONF_DIR}/conductor_proxy.conf;
    }
    location = /conductor/status {
        conductor_status;
        allow 127.0.0.1;
        deny all;
    }
SERVER
);

for my $i (1 .. 3) {
    my $r = http_request('POST', '/v1/chat/completions', {}, '{"model":"chat","messages":[]}');
    is $r->{status}, 200, "chat request $i";
}
my $r = http_request('POST', '/v1/messages', { 'anthropic-version' => '2023-06-01' },
                     '{"model":"claude","max_tokens":64,"messages":[]}');
is $r->{status}, 200, 'messages request';
$r = http_request('POST', '/v1/chat/completions', {}, '{"model":"chat","stream":true,"messages":[]}');
is $r->{status}, 200, 'a stream';
$r = http_request('POST', '/v1/chat/completions', {}, '{"model":"nope","messages":[]}');
is $r->{status}, 404, 'an error: an unknown model';

# the requests above are counted: http_request returns once nginx has logged
# each, which is when the module has counted it
my $s = status_report();
ok $s && @{ $s->{providers} } == 2, 'the JSON the page renders';

my $url = "http://127.0.0.1:$env->{TEST_NGINX_PORT}/conductor/status?format=html";
my $log = "$env->{TEST_NGINX_SERVROOT}/logs/access.log";
sub json_fetches { return scalar(() = do { local (@ARGV, $/) = $log; <> // '' } =~ m{GET /conductor/status\?format=json}g) }
my $fetches_before = json_fetches();

my ($status, $dom) = chromium('--virtual-time-budget=5000', '--dump-dom', $url);
is $status, 0, 'chromium --dump-dom ran';

like $dom, qr{<span id="meta">ngx_http_conductor_module 0\.1\.0 \S+ nginx },
    'the script ran: the header shows module and version';
like $dom, qr{nginx \Q$s->{nginx}\E}, '... and nginx';
unlike $dom, qr{id="meta">(?:loading|error)}, 'no loading or error left';

for my $p (@{ $s->{providers} }) {
    my @c = row_cells($dom, 'data-provider', $p->{name});
    is_deeply [ @c[0 .. 6] ], [ $p->{name}, $p->{api}, num($p->{requests}), num($p->{responses}), '0',
        num($p->{tokens}{total}), usd($p->{cost_usd}) ], "provider row $p->{name}" or diag explain_cells(@c);
    is $c[7], $p->{url}, "provider $p->{name}: url";
    for my $k (@{ $p->{keys} }) {
        my @kc = row_cells($dom, 'data-key', "$p->{name}/$k->{name}");
        ok @kc == 9, "key row $p->{name}/$k->{name}" or next;
        is $kc[0], "$p->{name} / $k->{name}", '... name';
        is $kc[1], 'closed', '... breaker';
        like $kc[3], qr/^\Q@{[ num($k->{requests}) ]}\E \(\d+\.\d%\)$/, "... requests $k->{requests} with share";
        like $kc[4], qr/^\Q@{[ num($k->{tokens}{total}) ]}\E \(\d+\.\d%\)$/, "... tokens $k->{tokens}{total} with share";
        like $kc[5], qr/^\Q@{[ usd($k->{cost_usd}) ]}\E \(\d+\.\d%\)$/, "... cost with share";
        my $lim = join '', map { "$_ " . num($k->{limits}{$_}{used}) . ' / ' . num($k->{limits}{$_}{limit}) }
            grep { $k->{limits}{$_} } qw(rpm tpm rph tph rpd tpd);
        is $kc[8], $lim || 'none', "... limits ($kc[8])";
    }
}
for my $m (@{ $s->{models} }) {
    my @c = row_cells($dom, 'data-model', $m->{name});
    ok @c == 6, "model row $m->{name}" or next;
    like $c[2], qr/^\Q@{[ num($m->{requests}) ]}\E \(\d+\.\d%\)$/, "... requests $m->{requests}";
    like $c[3], qr/^\Q@{[ num($m->{tokens}{total}) ]}\E \(/, "... tokens $m->{tokens}{total}";
    like $c[4], qr/^\Q@{[ usd($m->{cost_usd}) ]}\E \(/, '... cost';
}
like $dom, qr{<small>Tokens</small><b>\Q@{[ num($s->{totals}{tokens}{total}) ]}\E</b>}, 'the tokens card';

# ---------------------------------------------------------------- history

# the JSON the page asks for, before and after the page (a minute may turn
# between: then the page is compared with the one of its own minute)
my $HQ = '/conductor/status?format=json&recent=50&history=1h';
my $after = status_report(path => $HQ);
ok $after && $after->{history} && @{ $after->{recent} } == 6, 'the history and the 6 recent requests in the JSON'
    or diag scalar(@{ $after->{recent} || [] }) . ' recent: ' . join(' ', map { "$_->{status} " . ($_->{model} // '-') } @{ $after->{recent} || [] });

my %charts;
while ($dom =~ m{<svg ([^>]*data-chart="([^"]+)"[^>]*)>(.*?)</svg>}gs) {
    my ($attrs, $name, $inner) = ($1, $2, $3);
    my %a = $attrs =~ /([\w-]+)="([^"]*)"/g;
    my @rects = map { +{ /([\w-]+)="([^"]*)"/g } } $inner =~ m{<rect ([^>]*)>}g;
    $charts{$name} = { %a, rects => \@rects };
}
is_deeply [ sort keys %charts ], [ sort qw(requests tokens errors cost_usd) ],
    'four charts: requests, tokens, errors, cost';
my $hist = $after->{history};
my $ch = $charts{requests} // {};
if (($ch->{'data-end'} // 0) != $hist->{end}) {
    diag 'the minute turned while the page loaded: comparing with the JSON of its minute';
    $hist = $s->{history} // status_report(path => $HQ)->{history};
}
for my $name (qw(requests tokens errors cost_usd)) {
    my $c = $charts{$name} or next;
    my @page = split /,/, $c->{'data-values'};
    my @json = @{ $hist->{total}{$name} };
    is scalar @page, 60, "$name: 60 values drawn";
    ok @page == @json && !grep({ abs($page[$_] - $json[$_]) > 1e-12 } 0 .. $#json),
        "$name: the values drawn are the JSON's history.total.$name" or diag "page @page\njson @json";
    is_deeply [ map { $_->{'data-value'} } @{ $c->{rects} } ], \@page, "$name: a bar per minute, each with its value";
    is $c->{'data-end'}, $hist->{end}, "$name: ending with the JSON's minute";
    my ($max) = sort { $b <=> $a } @json;
    my @hs = map { $_->{height} } @{ $c->{rects} };
    ok $max > 0 ? (!grep { abs($hs[$_] - 50 * $json[$_] / $max) > 0.01 } 0 .. $#json)
                : (!grep { $_ != 0 } @hs),
        "$name: each bar's height is its value over the highest" or diag "heights @hs";
}
my $sum = 0;
$sum += $_ for @{ $hist->{total}{requests} };
is $sum, 6, 'the requests chart adds up to the 6 requests';
my $errs = 0;
$errs += $_ for @{ $hist->{total}{errors} };
is $errs, 1, 'the errors chart has the 404';

# the recent requests, newest first, a row each
sub hms { my ($t) = @_; my $ms = int($t * 1000 + 0.5); POSIX::strftime('%H:%M:%S', gmtime int($ms / 1000)) . sprintf('.%03d', $ms % 1000) }
my @recent = @{ $after->{recent} };
for my $i (0 .. $#recent) {
    my $q = $recent[$i];
    my @c = row_cells($dom, 'data-recent', $i);
    is_deeply \@c, [ hms($q->{time}), $q->{client} // '-', $q->{model} // '-',
        $q->{provider} ? $q->{provider} . ($q->{key} ? " / $q->{key}" : '') : '-', $q->{upstream_model} // '-',
        ($q->{endpoint} // '-') . ($q->{stream} ? ' stream' : ''), $q->{status}, num($q->{attempts}),
        num($q->{tokens}{total}), defined $q->{cost_usd} ? usd($q->{cost_usd}) : '-',
        defined $q->{ttfb_ms} ? "$q->{ttfb_ms} ms" : '-', "$q->{duration_ms} ms" ],
        "recent row $i: $q->{status} " . ($q->{model} // '') or diag explain_cells(@c);
}
ok !row_cells($dom, 'data-recent', scalar @recent), 'no more rows than recent requests';
is $recent[0]{status}, 404, 'the newest first: the 404';
is $recent[-1]{model}, 'chat', '... the first chat request last';
ok $s->{totals}{tokens}{total} > 1000, 'with thousands, written with separators' if $s->{totals}{tokens}{total};
unlike $dom, qr/secret/, 'no secret on the page';

# the browser's fetches are logged by nginx in its own time: awaited (bounded)
my $fetches;
wait_for(sub { ($fetches = json_fetches()) - $fetches_before >= 2 }, what => "the page's JSON fetches in the access log");
ok $fetches - $fetches_before >= 2, 'the page asked for the JSON again (every 2 s): '
    . ($fetches - $fetches_before) . ' fetches in 5 s of virtual time';

# the screenshot: a PNG of the window's size whose pixels decode
my $png = "$env->{TEST_NGINX_SERVROOT}/status.png";
unlink $png;
($status) = chromium('--virtual-time-budget=5000', "--screenshot=$png", '--window-size=1280,900', $url);
is $status, 0, 'chromium --screenshot ran';
ok -s $png, "screenshot written to $png";
my $data = do { local $/; open my $fh, '<:raw', $png or die "$png: $!"; <$fh> } // '';
is substr($data, 0, 8), "\x89PNG\r\n\x1a\n", 'PNG signature';
is substr($data, 12, 4), 'IHDR', 'IHDR first';
my ($w, $h, $depth, $color) = unpack 'N N C C', substr($data, 16, 10);
is_deeply [ $w, $h ], [ 1280, 900 ], 'width and height of the window';
my ($idat, $pos) = ('', 8);
while ($pos + 8 <= length $data) {
    my ($len, $type) = unpack 'N a4', substr($data, $pos, 8);
    $idat .= substr($data, $pos + 8, $len) if $type eq 'IDAT';
    $pos += 12 + $len;
}
my $pixels = Compress::Zlib::uncompress($idat);
my $bpp = { 0 => 1, 2 => 3, 4 => 2, 6 => 4 }->{$color} // 0;
ok $depth == 8 && $bpp, "8-bit samples, color type $color";
is length($pixels // ''), $h * (1 + $w * $bpp), 'the image data decodes to every row';
my %seen;
$seen{ substr($pixels, $_ * (1 + $w * $bpp) + 1 + 400 * $bpp, $bpp) }++ for 0 .. $h - 1;
ok keys(%seen) > 3, 'not a blank image (' . keys(%seen) . ' colours down one column)';

sub explain_cells { return join ' | ', map { defined ? $_ : 'undef' } @_ }

my $problems = stop_nginx();
is_deeply $problems, [], 'nginx ran clean';
done_testing();
