# A tenant's app for the tenant router's tests: an HTTP/1.1 server on 127.0.0.1:$PORT (Perl
# from the base image, nothing else) that answers every request with what it received, as
# JSON, streams three server-sent events on /events, 0.4 s apart, answers /slow after three
# seconds, and switches a WebSocket upgrade to echoing what it receives ("echo:" first).
use strict;
use warnings;
use IO::Socket::INET;

my $port = $ENV{PORT} || 8000;
my $server = IO::Socket::INET->new(
    LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 32, ReuseAddr => 1,
) or die "cannot listen on $port: $!";
$SIG{CHLD} = 'IGNORE';

sub esc { my $s = shift // ''; $s =~ s/(["\\])/\\$1/g; $s =~ s/[\x00-\x1f]//g; return $s; }

while (my $client = $server->accept) {
    if (fork) { close $client; next; }
    my $line = <$client> // exit 0;
    my ($method, $path) = split ' ', $line;
    my (@headers, %header);
    while (my $l = <$client>) {
        $l =~ s/\r?\n$//;
        last if $l eq '';
        my ($k, $v) = split /:\s*/, $l, 2;
        push @headers, [lc $k, $v];
        $header{lc $k} = $v;
    }
    my $body = '';
    if (my $length = $header{'content-length'}) {
        read($client, $body, $length);
    } elsif (($header{'transfer-encoding'} // '') =~ /chunked/i) {
        while (my $size = <$client>) {
            $size = hex($size);
            last if $size == 0;
            my $chunk;
            read($client, $chunk, $size);
            $body .= $chunk;
            <$client>;
        }
        <$client>;
    }
    if (($header{'upgrade'} // '') =~ /websocket/i) {
        print $client "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            . "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nX-Tenant: " . esc($ENV{MT_PAAS_TENANT_ID}) . "\r\n\r\n";
        $client->flush;
        while (sysread($client, my $data, 4096)) { syswrite($client, "echo:$data"); }
        close $client;
        exit 0;
    }
    sleep 3 if $path eq '/slow';
    if ($path eq '/events') {
        print $client "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";
        for my $i (1 .. 3) { print $client "data: $i\n\n"; $client->flush; select(undef, undef, undef, 0.4); }
        close $client;
        exit 0;
    }
    my $json = '{"method":"' . esc($method) . '","path":"' . esc($path) . '","body":"' . esc($body)
        . '","tenant_env":"' . esc($ENV{MT_PAAS_TENANT_ID}) . '","headers":{'
        . join(',', map { '"' . esc($_->[0]) . '":"' . esc($_->[1]) . '"' } @headers) . '}}';
    print $client "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        . length($json) . "\r\nConnection: close\r\nKeep-Alive: timeout=5\r\nX-Echo: yes\r\n\r\n$json";
    close $client;
    exit 0;
}
