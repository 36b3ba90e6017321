package est

import (
	"bytes"
	"encoding/asn1"
	"errors"
)

// Object identifiers of RFC 5652 §5.1 and §4.
var (
	oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidData       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
)

// certsOnly encodes certificates (DER, in the given order) as a degenerate
// CMS SignedData, the "certs-only" Simple PKI Response of RFC 5272 §4.1 that
// EST answers cacerts and enrollments with (RFC 7030 §4.1.3, §4.2.3): no
// content, no signers, the certificates in the certificates field.
//
//	ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT SignedData }
//	SignedData ::= SEQUENCE {
//	  version CMSVersion (1), digestAlgorithms SET OF (empty),
//	  encapContentInfo SEQUENCE { eContentType id-data },
//	  certificates [0] IMPLICIT SET OF Certificate,
//	  signerInfos SET OF (empty) }
//
// CMS is BER (RFC 5652 §1.1), so the order of the certificates is kept: the
// issued certificate first, as most EST clients expect.
func certsOnly(ders [][]byte) ([]byte, error) {
	if len(ders) == 0 {
		return nil, errors.New("certs-only: no certificates")
	}
	emptySet := asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSet, IsCompound: true, Bytes: []byte{}}
	sd := struct {
		Version          int
		DigestAlgorithms asn1.RawValue
		EncapContentInfo struct{ EContentType asn1.ObjectIdentifier }
		Certificates     asn1.RawValue
		SignerInfos      asn1.RawValue
	}{
		Version:          1,
		DigestAlgorithms: emptySet,
		Certificates:     asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: bytes.Join(ders, nil)},
		SignerInfos:      emptySet,
	}
	sd.EncapContentInfo.EContentType = oidData
	inner, err := asn1.Marshal(sd)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		ContentType asn1.ObjectIdentifier
		Content     asn1.RawValue // [0] EXPLICIT, written out
	}{oidSignedData, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}})
}
