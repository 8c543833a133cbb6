#!/usr/bin/perl
# Writes the small MaxMind DB fixtures that tests/unit/test_geo.c looks up
# (see README.md in this folder). Usage: make-fixtures.pl OUTDIR
#
# Only documentation networks are used (RFC 5737, RFC 3849); each one stands
# for a real place so that distances in the tests mean something.
use strict;
use warnings;

use MaxMind::DB::Writer::Tree;

die "usage: $0 OUTDIR\n" unless @ARGV == 1;
my $outdir = $ARGV[0];
die "$0: $outdir: not a directory\n" unless -d $outdir;

# A fixed build time and sorted insertion keep the output byte-identical.
my $epoch = 1700000000;

my %place = (
    frankfurt => { lat => 50.1109, lon => 8.6821,    cc => 'DE', city => 'Frankfurt am Main' },
    tokyo     => { lat => 35.6762, lon => 139.6503,  cc => 'JP', city => 'Tokyo' },
    ashburn   => { lat => 39.0438, lon => -77.4874,  cc => 'US', city => 'Ashburn' },
);

my @networks = (
    [ '192.0.2.0/24',    'frankfurt' ],
    [ '198.51.100.0/24', 'tokyo' ],
    [ '203.0.113.0/24',  'ashburn' ],
    [ '2001:db8:1::/48', 'frankfurt' ],
    [ '2001:db8:2::/48', 'tokyo' ],
);

my %country_name = (DE => 'Germany', JP => 'Japan', US => 'United States');

sub write_tree {
    my ($name, $tree) = @_;
    my $path = "$outdir/$name";
    $tree->_set_build_epoch($epoch);
    open my $fh, '>:raw', $path or die "$0: $path: $!\n";
    $tree->write_tree($fh);
    close $fh or die "$0: $path: $!\n";
}

# (a) GeoIP2 City schema, as MaxMind ships it: IPv6 tree with the IPv4
# networks in ::/96 and the usual aliases (::ffff:0:0/96, 6to4).
{
    my %types = (
        city                => 'map',
        continent           => 'map',
        country             => 'map',
        registered_country  => 'map',
        location            => 'map',
        names               => 'map',
        code                => 'utf8_string',
        en                  => 'utf8_string',
        iso_code            => 'utf8_string',
        time_zone           => 'utf8_string',
        geoname_id          => 'uint32',
        accuracy_radius     => 'uint16',
        latitude            => 'double',
        longitude           => 'double',
    );
    my $tree = MaxMind::DB::Writer::Tree->new(
        database_type            => 'GeoIP2-City',
        description              => { en => 'bootstrapd test fixture (GeoIP2 City schema)' },
        languages                => ['en'],
        ip_version               => 6,
        record_size              => 28,
        alias_ipv6_to_ipv4       => 1,
        remove_reserved_networks => 0,
        merge_strategy           => 'none',
        map_key_type_callback    => sub { $types{ $_[0] } // die "no type for key $_[0]\n" },
    );
    for my $n (@networks) {
        my $p = $place{ $n->[1] };
        $tree->insert_network($n->[0], {
            city     => { names => { en => $p->{city} } },
            country  => { iso_code => $p->{cc}, names => { en => $country_name{ $p->{cc} } } },
            registered_country => { iso_code => $p->{cc} },
            location => { latitude => $p->{lat}, longitude => $p->{lon}, accuracy_radius => 20 },
        });
    }
    # Known only by the country its block is registered in (no location,
    # no country): the lookup falls back to the registered country.
    $tree->insert_network('2001:db8:3::/48', { registered_country => { iso_code => 'US' } });
    # country.mmdb has this network with an unknown country code.
    $tree->insert_network('2001:db8:4::/48', {
        country  => { iso_code => 'US' },
        location => { latitude => $place{ashburn}{lat}, longitude => $place{ashburn}{lon} },
    });
    write_tree('city.mmdb', $tree);
}

# (b) The flat schema of the ip-location-db packages (e.g. dbip-city-mmdb):
# top-level keys, coordinates stored as float like the real files.
sub flat_tree {
    my ($type, $ip_version, $desc) = @_;
    my %types = (
        city         => 'utf8_string',
        country_code => 'utf8_string',
        state1       => 'utf8_string',
        latitude     => 'float',
        longitude    => 'float',
    );
    return MaxMind::DB::Writer::Tree->new(
        database_type            => $type,
        description              => { en => $desc },
        ip_version               => $ip_version,
        record_size              => 24,
        remove_reserved_networks => 0,
        merge_strategy           => 'none',
        map_key_type_callback    => sub { $types{ $_[0] } // die "no type for key $_[0]\n" },
    );
}

{
    my $tree = flat_tree('city ipv6', 6, 'bootstrapd test fixture (flat schema)');
    for my $n (@networks) {
        my $p = $place{ $n->[1] };
        $tree->insert_network($n->[0], {
            city => $p->{city}, country_code => $p->{cc},
            latitude => $p->{lat}, longitude => $p->{lon},
        });
    }
    write_tree('flat.mmdb', $tree);
}

# (c) Country only (flat schema): the centroid table supplies the point.
# 2001:db8:4::/48 has a code the centroid table does not know; 2001:db8:5::/48
# is Namibia, whose code "NA" must not be taken for a missing value.
{
    my $tree = flat_tree('country ipv6', 6, 'bootstrapd test fixture (country only)');
    for my $n (@networks[0 .. 2]) {
        $tree->insert_network($n->[0], { country_code => $place{ $n->[1] }{cc} });
    }
    $tree->insert_network('2001:db8:4::/48', { country_code => 'ZZ' });
    $tree->insert_network('2001:db8:5::/48', { country_code => 'NA' });
    write_tree('country.mmdb', $tree);
}

# (d) An IPv4-only file (ip_version 4), like ip-location-db's *-ipv4.mmdb:
# an IPv6 address cannot be looked up in it at all. Frankfurt only.
{
    my $tree = flat_tree('city ipv4', 4, 'bootstrapd test fixture (IPv4 only)');
    my $p = $place{frankfurt};
    $tree->insert_network('192.0.2.0/24', {
        city => $p->{city}, country_code => $p->{cc},
        latitude => $p->{lat}, longitude => $p->{lon},
    });
    write_tree('ipv4.mmdb', $tree);
}
