import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { asciiField } from './ascii.js';

test('asciiField: the character codes of a text that fills the field exactly', () => {
  assert.equal(asciiField('PCMP', 4, 'MP table'), [0x50, 0x43, 0x4d, 0x50]);
  assert.equal(asciiField('', 0, 'ACPI'), []);
});

test('asciiField: a text shorter or longer than the field is refused, naming the table', () => {
  assert.throws(() => asciiField('RSD', 4, 'ACPI'), /^ACPI: 'RSD' must be exactly 4 characters$/);
  assert.throws(() => asciiField('TSVMM-PC', 6, 'MP table'), /^MP table: 'TSVMM-PC' must be exactly 6 characters$/);
});

test.run();
