<#
.SYNOPSIS
Prints how one IIS site's configuration differs from another's, section by section.

.DESCRIPTION
Run it on a staging server after a deploy with immune.canary.iis_site_swap, as an
administrator, with the site that ran before and the new one:

    powershell.exe -NoProfile -File Compare-IISSite.ps1 -Running app.example.com-3456 -New app.example.com-3457

It reads applicationHost.config the way iis_site_swap does: the <site> element, the
app pools its applications run in and every <location path="SITE..."> tag. The site
names are replaced by <site> before comparing, so what it prints is what differs
besides the name: the physical paths (expected: the release folder), the id, and
anything else (not expected). Encrypted values are never printed; an app pool's
password is compared inside IIS and reported as same or different.

Exit code 0 when only names, ids and paths differ, 1 otherwise.
#>
param(
    [Parameter(Mandatory = $true)][string]$Running,
    [Parameter(Mandatory = $true)][string]$New
)
$ErrorActionPreference = 'Stop'
Import-Module -Name WebAdministration
Import-Module -Name IISAdministration

function Get-Elements {
    param($Node)
    return @($Node.ChildNodes | Where-Object -FilterScript { $_ -is [System.Xml.XmlElement] })
}

function Add-Flat {
    param($Node, [string]$Key, [string]$Site, $Into)
    $attrs = [ordered]@{}
    foreach ($attribute in @($Node.Attributes)) {
        $value = [string]$attribute.Value
        if ($value.StartsWith('[enc:')) { $value = '(encrypted)' }
        $attrs[$attribute.Name] = $value.Replace($Site, '<site>')
    }
    $Into[$Key] = $attrs
    foreach ($child in (Get-Elements -Node $Node)) {
        $label = $child.LocalName
        foreach ($name in @('name', 'path', 'value', 'bindingInformation')) {
            if ($child.HasAttribute($name)) {
                $label = $label + '[' + $child.GetAttribute($name).Replace($Site, '<site>') + ']'
                break
            }
        }
        Add-Flat -Node $child -Key ($Key + '/' + $label) -Site $Site -Into $Into
    }
}

function Get-SiteSections {
    param($Xml, [string]$Site)
    $sections = [ordered]@{}
    $node = @(Get-Elements -Node $Xml.DocumentElement.SelectSingleNode('system.applicationHost/sites') |
        Where-Object -FilterScript { $_.LocalName -eq 'site' -and $_.GetAttribute('name') -eq $Site })
    if ($node.Count -eq 0) { throw ('no site ' + $Site) }
    Add-Flat -Node $node[0] -Key 'site' -Site $Site -Into $sections
    $pools = @([string](Get-Item -LiteralPath ('IIS:\Sites\' + $Site)).applicationPool)
    foreach ($application in @(Get-WebApplication -Site $Site)) { $pools += [string]$application.applicationPool }
    foreach ($pool in @($pools | Select-Object -Unique)) {
        $poolNode = @(Get-Elements -Node $Xml.DocumentElement.SelectSingleNode('system.applicationHost/applicationPools') |
            Where-Object -FilterScript { $_.LocalName -eq 'add' -and $_.GetAttribute('name') -eq $pool })
        if ($poolNode.Count -gt 0) { Add-Flat -Node $poolNode[0] -Key ('app pool ' + $pool.Replace($Site, '<site>')) -Site $Site -Into $sections }
    }
    foreach ($location in @(Get-Elements -Node $Xml.DocumentElement | Where-Object -FilterScript { $_.LocalName -eq 'location' })) {
        $path = $location.GetAttribute('path')
        if ($path -eq $Site -or $path.StartsWith($Site + '/')) {
            Add-Flat -Node $location -Key ('location ' + $path.Replace($Site, '<site>')) -Site $Site -Into $sections
        }
    }
    return $sections
}

$file = Get-WebConfigFile -PSPath 'MACHINE/WEBROOT/APPHOST'
$xml = New-Object -TypeName System.Xml.XmlDocument
$xml.LoadXml((Get-Content -LiteralPath $file.FullName -Raw -Encoding UTF8))
$before = Get-SiteSections -Xml $xml -Site $Running
$after = Get-SiteSections -Xml $xml -Site $New
$expected = @('name', 'id', 'physicalPath', 'serverAutoStart')
$unexpected = 0
foreach ($key in @(@($before.Keys) + @($after.Keys) | Sort-Object -Unique)) {
    if (-not $after.Contains($key)) {
        Write-Output -InputObject ('- ' + $key + '    (only in ' + $Running + ')')
        $unexpected++
        continue
    }
    if (-not $before.Contains($key)) {
        Write-Output -InputObject ('+ ' + $key + '    (only in ' + $New + ')')
        $unexpected++
        continue
    }
    foreach ($name in @(@($before[$key].Keys) + @($after[$key].Keys) | Sort-Object -Unique)) {
        $old = $before[$key][$name]
        $now = $after[$key][$name]
        if ($old -ne $now) {
            $mark = '!'
            if ($expected -contains $name) { $mark = '~' } else { $unexpected++ }
            Write-Output -InputObject ($mark + ' ' + $key + ' ' + $name + ': ' + [string]$old + ' -> ' + [string]$now)
        }
    }
}

# The pools' passwords, compared inside IIS and never printed
# (ApplicationPool.ProcessModel.Password, Microsoft.Web.Administration:
# https://learn.microsoft.com/dotnet/api/microsoft.web.administration.applicationpoolprocessmodel.password).
$oldPool = Get-IISAppPool -Name ([string](Get-Item -LiteralPath ('IIS:\Sites\' + $Running)).applicationPool)
$newPool = Get-IISAppPool -Name ([string](Get-Item -LiteralPath ('IIS:\Sites\' + $New)).applicationPool)
if ($oldPool.ProcessModel.Password -eq $newPool.ProcessModel.Password) {
    Write-Output -InputObject '= app pool password: same'
}
else {
    Write-Output -InputObject '! app pool password: different'
    $unexpected++
}
Write-Output -InputObject ([string]$unexpected + ' unexpected difference(s); ~ marks names, ids and paths, which change by design')
if ($unexpected -gt 0) { exit 1 }
exit 0
