"""PAR Brink answers for the client's tests: seed 003's GetParty answer as printed (its ``i:`` prefix never
declared), the same answer as WCF sends it (namespaced), and small builders for other parties and results."""

from __future__ import annotations

from collections.abc import Sequence

SEED_GET_PARTY = b"""<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">
  <s:Body>
    <GetPartyResponse xmlns="http://www.brinksoftware.com/webservices/ordering/20140219">
      <GetPartyResult>
        <Message>Success</Message>
        <ResultCode>0</ResultCode>
        <Party>
          <CreatedTime>2024-01-15T18:00:00Z</CreatedTime>
          <Id>50001</Id>
          <Name>Table 5</Name>
          <Orders>
            <Order>
              <Balance>0.00</Balance>
              <BusinessDate>2024-01-15T00:00:00</BusinessDate>
              <CreatedTime>2024-01-15T18:05:00Z</CreatedTime>
              <CustomerId>00000000-0000-0000-0000-000000000000</CustomerId>
              <DestinationId>1</DestinationId>
              <Discounts/>
              <Entries>
                <OrderEntry i:type="OrderItem">
                  <ComboItems/>
                  <ComponentId i:nil="true"/>
                  <CompositeOrderItemId>0</CompositeOrderItemId>
                  <Denominator>1</Denominator>
                  <Description>Steak Dinner</Description>
                  <DestinationId>1</DestinationId>
                  <Discounts/>
                  <Id>1</Id>
                  <ItemId>301</ItemId>
                  <Modifiers/>
                  <Note>Medium rare</Note>
                  <Price>24.99</Price>
                  <Promotions/>
                  <Seat>1</Seat>
                  <SplitItemId>0</SplitItemId>
                  <Taxes>
                    <OrderEntryTax>
                      <Amount>2.00</Amount>
                      <Id>1</Id>
                      <TaxId>1</TaxId>
                    </OrderEntryTax>
                  </Taxes>
                </OrderEntry>
              </Entries>
              <FutureOrder i:nil="true"/>
              <Id>99001</Id>
              <IdEncoded>OTkwMDE=</IdEncoded>
              <IsClosed>false</IsClosed>
              <IsSent>true</IsSent>
              <IsTaxExempt>false</IsTaxExempt>
              <LaneId>1</LaneId>
              <Name>Guest 1</Name>
              <Number>2001</Number>
              <Payments/>
              <Promotions/>
              <Rounding>0.00</Rounding>
              <SectionId>1</SectionId>
              <Subtotal>24.99</Subtotal>
              <Surcharges/>
              <Tax>2.00</Tax>
              <Taxes>
                <OrderTax>
                  <Amount>2.00</Amount>
                  <Id>1</Id>
                  <TaxId>1</TaxId>
                </OrderTax>
              </Taxes>
              <Total>26.99</Total>
            </Order>
          </Orders>
          <OwnerEmployeeId>42</OwnerEmployeeId>
          <Size>2</Size>
          <TableId>5</TableId>
        </Party>
      </GetPartyResult>
    </GetPartyResponse>
  </s:Body>
</s:Envelope>
"""

XSI = "http://www.w3.org/2001/XMLSchema-instance"
# The seed's answer as WCF writes it: xmlns:i declared on the envelope, Message nil on success.
WCF_GET_PARTY = SEED_GET_PARTY.replace(
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/">',
    b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:i="' + XSI.encode() + b'">',
).replace(b"<Message>Success</Message>", b'<Message i:nil="true"/>')


def envelope(inner: str, *, declare_i: bool = True) -> bytes:
    """A SOAP envelope around ``inner`` (the Body's content), ``xmlns:i`` declared unless told not to."""
    xsi = f' xmlns:i="{XSI}"' if declare_i else ""
    return (
        f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"{xsi}><s:Body>{inner}</s:Body></s:Envelope>'
    ).encode()


def result(operation: str, code: int, message: str = "", extra: str = "") -> bytes:
    """``{operation}Response/{operation}Result`` with ResultCode ``code`` (and a Party etc. in ``extra``)."""
    said = f"<Message>{message}</Message>" if message else '<Message i:nil="true"/>'
    return envelope(
        f'<{operation}Response xmlns="http://www.brinksoftware.com/webservices/ordering/20140219">'
        f"<{operation}Result>{said}<ResultCode>{code}</ResultCode>{extra}</{operation}Result>"
        f"</{operation}Response>"
    )


def fault(code: str = "s:Client", text: str = "The request was not valid") -> bytes:
    return envelope(
        f'<s:Fault><faultcode>{code}</faultcode><faultstring xml:lang="en-US">{text}</faultstring></s:Fault>'
    )


def order(
    order_id: int,
    *,
    total: str,
    balance: str | None = None,
    closed: bool = False,
    payments: Sequence[str] = (),
    deposits: Sequence[str] = (),
    entries: Sequence[str] = (),
    number: int = 1,
) -> str:
    """One ``Order`` element; ``balance`` None leaves Balance out, "nil" sends it ``i:nil``."""
    if balance is None:
        bal = ""
    elif balance == "nil":
        bal = '<Balance i:nil="true"/>'
    else:
        bal = f"<Balance>{balance}</Balance>"
    return (
        f"<Order>{bal}<Deposits>{''.join(deposits)}</Deposits><Entries>{''.join(entries)}</Entries>"
        f"<Id>{order_id}</Id><IsClosed>{'true' if closed else 'false'}</IsClosed><Name>Guest</Name>"
        f"<Number>{number}</Number><Payments>{''.join(payments)}</Payments><Total>{total}</Total></Order>"
    )


def payment(amount: str, *, deleted: bool = False, key: str | None = None, pid: int = 1) -> str:
    data = f"<NameValuePair><Name>taptill_key</Name><Value>{key}</Value></NameValuePair>" if key else ""
    return (
        f"<OrderPayment><AdditionalData>{data}</AdditionalData><Amount>{amount}</Amount><Id>{pid}</Id>"
        f"<IsDeleted>{'true' if deleted else 'false'}</IsDeleted><TenderId>7</TenderId>"
        "<TipAmount>0.00</TipAmount></OrderPayment>"
    )


def deposit(amount: str, *, applied: bool = True, deleted: bool = False, reversal: bool = False) -> str:
    def b(v: bool) -> str:
        return "true" if v else "false"

    return (
        f"<OrderDeposit><Amount>{amount}</Amount><IsApplied>{b(applied)}</IsApplied>"
        f"<IsDeleted>{b(deleted)}</IsDeleted><IsReversal>{b(reversal)}</IsReversal></OrderDeposit>"
    )


def item(entry_id: int, description: str, price: str, *, voided: bool = False, deleted: bool = False) -> str:
    return (
        f'<OrderEntry i:type="OrderItem"><Description>{description}</Description><Id>{entry_id}</Id>'
        f"<IsDeleted>{'true' if deleted else 'false'}</IsDeleted>"
        f"<IsVoided>{'true' if voided else 'false'}</IsVoided><Price>{price}</Price></OrderEntry>"
    )


def gift_card(entry_id: int, description: str, price: str) -> str:
    return (
        f'<OrderEntry i:type="OrderGiftCard"><Description>{description}</Description><Id>{entry_id}</Id>'
        f"<Price>{price}</Price></OrderEntry>"
    )


def party_answer(orders: Sequence[str], *, party_id: int = 7001, table_id: int = 12) -> bytes:
    """GetParty ResultCode 0 with a party of ``orders``."""
    return result(
        "GetParty",
        0,
        extra=(
            f"<Party><Id>{party_id}</Id><Name>Table {table_id}</Name><Orders>{''.join(orders)}</Orders>"
            f"<TableId>{table_id}</TableId></Party>"
        ),
    )
